"""The shape of an AIS-140 packet: splitting it, and finding its standard fields.

    $NRM,ROADRPA,3.5AIS,NR,01,L,869867036940288,,1,04012020,094901,23.18,N,77.45,E,0.0,...
     |   |       |      |  |  |  IMEI           |  date     time   lat     lon
     |   |       |      |  |  +-- L live / H history
     |   |       |      |  +-- alert id
     |   |       |      +-- packet type (NR normal, EA emergency, TA tamper, ...)
     |   |       +-- firmware
     |   +-- vendor id: picks the profile
     +-- header (some vendors send "$," and the header after it)

AIS-140 fixes the order of the fields from the header to the cell id (HEAD), but
vendors drop some, merge the date and time, split them in six, or put a validity
flag after the time. So `anchor` finds the position by its shape (a number, N or
S, a number, E or W) and reads the rest around it: date and time and IMEI
before, speed, heading, ... after, and the digital inputs and outputs
(`[012]{4},[01]{2}`) that end the cell list. Every function here returns named
field texts; turning text into numbers is the parser's job.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from gateway.drivers.ais140.checksums import Place, Span
from gateway.drivers.ais140.packets import PacketError

MAX_PACKET: Final = 1024

HEAD: Final[tuple[str, ...]] = (
    "header",
    "vendor_id",
    "firmware",
    "packet_type",
    "alert_id",
    "packet_status",
    "imei",
    "vehicle_reg",
    "gps_fix",
    "date",
    "time",
    "lat",
    "lat_dir",
    "lon",
    "lon_dir",
    "speed_kmh",
    "heading",
    "sats",
    "altitude_m",
    "pdop",
    "hdop",
    "operator",
    "ignition",
    "main_power",
    "main_v",
    "battery_v",
    "emergency",
    "tamper",
    "gsm_signal",
    "mcc",
    "mnc",
    "lac",
    "cell_id",
)
# after the longitude, in the standard's order, up to the optional tamper field
AFTER_LON: Final = HEAD[HEAD.index("speed_kmh") : HEAD.index("tamper")]
AFTER_TAMPER: Final = HEAD[HEAD.index("gsm_signal") :]
# the emergency-server format after the longitude
AFTER_LON_EMERGENCY: Final = ("altitude_m", "speed_kmh", "distance_km", "provider", "reg", "mobile")

# the standard's health packet ($HLM), after the header
HEALTH: Final = (
    "vendor_id",
    "firmware",
    "imei",
    "battery_pct",
    "low_battery_threshold_pct",
    "memory_used_pct",
    "update_rate_ignition_on_s",
    "update_rate_ignition_off_s",
    "digital_inputs",
    "analog_input",
)

_DEGREES = re.compile(r"\d{1,5}(?:\.\d+)?")  # degrees, or NMEA ddmm.mmmm / dddmm.mmmm
_HEX = re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{4}|[0-9A-Fa-f]{2}")
_IMEI = re.compile(r"\d{15}")
_DIGITS = re.compile(r"\d+")
_INPUTS = re.compile(r"[012]{4}")
_OUTPUTS = re.compile(r"[01]{2}")
_PACKET_TYPE = re.compile(r"[A-Z]{2}")
_VERSION = re.compile(r"[A-Za-z]{0,4}\d+(?:[._][0-9A-Za-z]+)+")
_REGISTRATION = re.compile(r"[A-Z]{2}\d{1,2}[A-Z]{0,3}\d{3,4}")
_MCC = re.compile(r"\d{3}")
_VALID = frozenset({"A", "V", "0", "1"})
_EMERGENCY_TYPES = frozenset({"EMR", "SEM"})


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One packet split: `fields` without a leading empty field ("$,NRM,..." -> NRM
    first); `after_star` the hex after '*'; `trailer` other text after it."""

    text: str
    fields: tuple[str, ...]
    star: int  # index of '*' in text, -1 if none
    after_star: str
    trailer: str

    @property
    def header(self) -> str:
        return self.fields[0]

    @property
    def vendor(self) -> str:
        return self.fields[1] if len(self.fields) > 1 else ""


def split(data: bytes) -> Frame:
    """A packet's parts, or PacketError (bad_packet, oversized)."""
    if len(data) > MAX_PACKET:
        raise PacketError("oversized", f"{len(data)} bytes > {MAX_PACKET}")
    packet = data.strip()
    if not packet.startswith(b"$"):
        raise PacketError("bad_packet", "an AIS-140 packet starts with '$'")
    try:
        text = packet.decode("ascii")
    except UnicodeDecodeError:
        raise PacketError("bad_packet", "an AIS-140 packet is ASCII") from None
    if not text.isprintable():
        raise PacketError("bad_packet", "control characters inside the packet")
    body, star, rest = text[1:].partition("*")
    if "*" in rest or "$" in body:
        raise PacketError("bad_packet", "more than one '*' or '$' in the packet")
    after, trailer = (rest, "") if not rest or _HEX.fullmatch(rest) else ("", rest)
    fields = body.split(",")
    if fields[0] == "" and len(fields) > 1:
        fields = fields[1:]
    if not fields[0]:
        raise PacketError("bad_packet", "no header after '$'")
    return Frame(text, tuple(fields), len(body) + 1 if star else -1, after, trailer)


def last_field(frame: Frame) -> int | None:
    """Index in `fields` of the last non-empty field, when it could be a checksum."""
    i = len(frame.fields) - 1
    while i > 0 and frame.fields[i] == "":
        i -= 1
    return i if i > 0 and _HEX.fullmatch(frame.fields[i]) else None


def claimed(frame: Frame, place: Place) -> tuple[str, int] | None:
    """The checksum the packet carries and where its first character is in `text`."""
    if place == "after_star":
        return (frame.after_star, frame.star + 1) if frame.after_star else None
    i = last_field(frame)
    if i is None:
        return None
    end = frame.star if frame.star >= 0 else len(frame.text)
    start = frame.text.rindex(frame.fields[i], 0, end)
    return frame.fields[i], start


def covered(frame: Frame, span: Span, start: int) -> bytes:
    """The bytes a checksum starting at `start` covers, for its span."""
    text = frame.text
    if span == "through":
        return text[:start].encode("ascii")
    end = frame.star if 0 <= frame.star < start else len(text[:start].rstrip(","))
    return text[:end].encode("ascii") if span == "dollar" else text[1:end].encode("ascii")


def anchor(fields: tuple[str, ...]) -> int | None:
    """Index of the latitude: a number, N or S, a number, E or W."""
    for i in range(len(fields) - 3):
        if (
            fields[i + 1] in ("N", "S")
            and fields[i + 3] in ("E", "W")
            and _DEGREES.fullmatch(fields[i])
            and _DEGREES.fullmatch(fields[i + 2])
        ):
            return i
    return None


def _datetime(fields: tuple[str, ...], j: int, out: dict[str, str]) -> int:
    """Reads the date and time ending at index j into `out`; the index before them."""
    f = fields
    if j >= 0 and len(f[j]) == 14 and f[j].isdigit():
        out["date"], out["time"] = f[j][:8], f[j][8:]
        return j - 1
    if j >= 1 and len(f[j]) == 6 and len(f[j - 1]) in (6, 8) and (f[j - 1] + f[j]).isdigit():
        date = f[j - 1]  # ddmmyyyy, or ddmmyy (GPSBOX)
        out["date"] = date if len(date) == 8 else date[:4] + "20" + date[4:]
        out["time"] = f[j]
        return j - 2
    six = f[j - 5 : j + 1] if j >= 5 else ()
    if tuple(len(p) for p in six) == (2, 2, 4, 2, 2, 2) and all(p.isdigit() for p in six):
        out["date"], out["time"] = "".join(six[:3]), "".join(six[3:])
        return j - 6
    raise PacketError("bad_field", "no date and time (ddmmyyyy hhmmss) before the latitude")


def _before_imei(pre: tuple[str, ...], out: dict[str, str]) -> None:
    """Vendor, firmware, packet type, alert id and L/H: the fields between header and IMEI."""
    if pre and pre[-1] in _EMERGENCY_TYPES:
        out["message_type"] = pre[-1]
        out["vendor_id"] = pre[0] if len(pre) > 1 else ""
        return
    k = len(pre) - 1
    if k >= 0 and pre[k] in ("L", "H", "S"):  # live, history; some firmwares: S (stored)
        out["packet_status"] = pre[k]
        k -= 1
    if k >= 2 and _DIGITS.fullmatch(pre[k]) and len(pre[k]) <= 2:
        out["alert_id"] = pre[k]
        k -= 1
    if k >= 1 and _PACKET_TYPE.fullmatch(pre[k]):
        out["packet_type"] = pre[k]
        k -= 1
    if k >= 0:
        out["vendor_id"] = pre[0]
    if k >= 1:
        out["firmware"] = pre[1]


def _after_lon(fields: tuple[str, ...], i: int, out: dict[str, str]) -> int:
    """The standard fields after the longitude; the index after the cell id."""
    for name in AFTER_LON:
        if i >= len(fields):
            return i
        out[name] = fields[i]
        i += 1
    # the tamper field is optional (SAT leaves it out): absent when an MCC follows
    if i < len(fields) and not (i + 1 < len(fields) and _MCC.fullmatch(fields[i + 1])):
        out["tamper"] = fields[i]
        i += 1
    for name in AFTER_TAMPER:
        if i >= len(fields):
            return i
        out[name] = fields[i]
        i += 1
    return i


def _io(fields: tuple[str, ...], start: int) -> int | None:
    """Index of the digital inputs: the last `[012]{4},[01]{2}` pair from `start`."""
    for m in range(len(fields) - 2, start - 1, -1):
        if _INPUTS.fullmatch(fields[m]) and _OUTPUTS.fullmatch(fields[m + 1]):
            return m
    return None


def read_location(fields: tuple[str, ...], tail: tuple[str, ...]) -> dict[str, str]:
    """A location packet's named fields found by shape; PacketError when it has none.
    `tail` names the fields after the digital outputs; the rest go in `tail_N`."""
    lat = anchor(fields)
    if lat is None:
        raise PacketError("no_position", "no latitude,N|S,longitude,E|W in the packet")
    out: dict[str, str] = {"header": fields[0]}
    out.update(lat=fields[lat], lat_dir=fields[lat + 1])
    out.update(lon=fields[lat + 2], lon_dir=fields[lat + 3])
    j = lat - 1
    if j >= 0 and fields[j] in _VALID:
        out["gps_fix"] = fields[j]
        j -= 1
    j = _datetime(fields, j, out)
    if j >= 0 and "gps_fix" not in out and fields[j] in _VALID:
        out["gps_fix"] = fields[j]
        j -= 1
    imei = next((k for k in range(1, j + 1) if _IMEI.fullmatch(fields[k])), None)
    if imei is None:
        raise PacketError("no_imei", "no 15-digit IMEI before the date")
    out["imei"] = fields[imei]
    between = fields[imei + 1 : j + 1]
    if between and between[0] in ("NM", "SP"):
        out["emergency_status"], between = between[0], between[1:]
    if between:
        out["vehicle_reg"] = between[0]
    _before_imei(fields[1:imei], out)
    if "message_type" in out:
        for name, text in zip(AFTER_LON_EMERGENCY, fields[lat + 4 :], strict=False):
            out[name] = text
        return out
    end = _after_lon(fields, lat + 4, out)
    io = _io(fields, end)
    if io is None:
        rest = fields[end:]
    else:
        out["cells"] = ",".join(fields[end:io])
        out["digital_inputs"], out["digital_outputs"] = fields[io], fields[io + 1]
        rest = fields[io + 2 :]
    for n, text in enumerate(rest):
        out[tail[n] if n < len(tail) else f"tail_{n}"] = text
    return out


def read_login(fields: tuple[str, ...]) -> dict[str, str]:
    """A login's IMEI, registration, firmware and position, found by shape."""
    imei = next((k for k in range(1, len(fields)) if _IMEI.fullmatch(fields[k])), None)
    if imei is None:
        raise PacketError("no_imei", "a login without a 15-digit IMEI")
    out = {"header": fields[0], "imei": fields[imei]}
    near = [fields[k] for k in (imei + 1, imei - 1, imei + 2, imei - 2) if 0 < k < len(fields)]
    out["firmware"] = next((t for t in near if _VERSION.fullmatch(t)), "")
    reg = next((t for t in near if _REGISTRATION.fullmatch(t.upper())), "")
    out["vehicle_reg"] = reg
    out["protocol"] = "AIS140" if "AIS140" in fields else ""
    lat = anchor(fields)
    if lat is not None:
        out.update(lat=fields[lat], lat_dir=fields[lat + 1])
        out.update(lon=fields[lat + 2], lon_dir=fields[lat + 3])
    vendor = fields[1] if imei > 1 else ""
    out["vendor_id"] = "" if vendor in (reg, out["firmware"]) or vendor.isdigit() else vendor
    return out


def read_heartbeat(fields: tuple[str, ...], names: tuple[str, ...]) -> dict[str, str]:
    """A heartbeat's fields: by `names` where the profile gives them, by the standard's
    health layout when the IMEI is where it puts it, else the IMEI alone."""
    out = {"header": fields[0]}
    if not names and len(fields) > 3 and _IMEI.fullmatch(fields[3]):
        names = HEALTH
    if names:
        out.update(zip(names, fields[1:], strict=False))
        return out
    imei = next((t for t in fields[1:] if _IMEI.fullmatch(t)), None)
    if imei is None:
        raise PacketError("no_imei", "a heartbeat without a 15-digit IMEI")
    out["imei"] = imei
    return out
