"""AIS-140 packets as vendors' units send them, written independently of the driver.

    fixed_location("gwsim", values)   the layouts whose every field is known (arai, gwsim),
                                      from named values; the MQTT bus simulator uses it
    location(shape, fix)              one fix in a vendor's shape (SHAPES)
    login(shape, unit), heartbeat(shape, unit)

Checksums come from the standard library (binascii.crc_hqx is CRC-16/CCITT with the
0xFFFF start, zlib.crc32), not from the gateway's code.
"""

from __future__ import annotations

import binascii
import dataclasses
import datetime as dt
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal

Checksum = Literal["xor8", "crc16", "crc32", "none"]

STANDARD_HEAD: Final = (
    "header", "vendor_id", "firmware", "packet_type", "alert_id", "packet_status", "imei",
    "vehicle_reg", "gps_fix", "date", "time", "lat", "lat_dir", "lon", "lon_dir", "speed_kmh",
    "heading", "sats", "altitude_m", "pdop", "hdop", "operator", "ignition", "main_power",
    "main_v", "battery_v", "emergency", "tamper", "gsm_signal", "mcc", "mnc", "lac", "cell_id",
)  # fmt: skip
FIXED_TAILS: Final[dict[str, tuple[str, ...]]] = {
    "arai": (
        *(f"nmr{n}_{part}" for n in range(1, 5) for part in ("cell", "lac", "signal")),
        "digital_inputs", "digital_outputs", "frame_number",
    ),
    "gwsim": ("frame_number", "odometer_km", "digital_inputs", "digital_outputs", "analog_input"),
}  # fmt: skip
FIXED_CHECKSUMS: Final[dict[str, Checksum]] = {"arai": "xor8", "gwsim": "crc16"}


def _xor(data: bytes) -> int:
    acc = 0
    for byte in data:
        acc ^= byte
    return acc


def checksum(kind: Checksum, data: bytes) -> str:
    if kind == "xor8":
        return f"{_xor(data):02X}"
    if kind == "crc16":
        return f"{binascii.crc_hqx(data, 0xFFFF):04X}"
    if kind == "crc32":
        return f"{zlib.crc32(data):08X}"
    return ""


def frame(fields: Sequence[str], kind: Checksum) -> bytes:
    """`$` + fields + `*` + the checksum of the bytes between `$` and `*`."""
    body = ",".join(fields).encode("ascii")
    return b"$" + body + b"*" + checksum(kind, body).encode("ascii")


def fixed_location(layout: str, values: Mapping[str, str]) -> bytes:
    """A location packet of a fixed layout from named values (missing ones empty)."""
    names = (*STANDARD_HEAD, *FIXED_TAILS[layout])
    return frame([values.get(name, "") for name in names], FIXED_CHECKSUMS[layout])


def gwsim_location(values: Mapping[str, str]) -> bytes:
    """The MQTT bus simulator's packet (what firmware_sim/buses/fleet.py sends)."""
    return fixed_location("gwsim", values)


@dataclasses.dataclass(frozen=True, slots=True)
class Fix:
    imei: str
    reg: str
    at: dt.datetime  # UTC
    lat: float
    lon: float
    speed_kmh: float = 0.0
    heading: float = 0.0
    frame: int = 1
    live: bool = True
    panic: bool = False
    ignition: bool = True
    main_v: float = 26.5


def _coord(value: float, pos: str, neg: str, digits: int = 6) -> list[str]:
    return [f"{abs(value):.{digits}f}", pos if value >= 0 else neg]


def _standard(fix: Fix, header: list[str], vendor: list[str], date: list[str]) -> list[str]:
    kind = "EA" if fix.panic else "NR"
    return [
        *header, *vendor, kind, "10" if fix.panic else "01", "L" if fix.live else "H",
        fix.imei, fix.reg, "1", *date, *_coord(fix.lat, "N", "S"), *_coord(fix.lon, "E", "W"),
        f"{fix.speed_kmh:.1f}", f"{fix.heading:.2f}", "12", "560.0", "1.1", "0.8", "BSNL",
        "1" if fix.ignition else "0", "1", f"{fix.main_v:.1f}", "4.1", "1" if fix.panic else "0",
        "C", "24", "404", "22", "1A2B", "3C4D",
        "1A2B", "3C4E", "18", "1A2B", "3C4F", "15", "1A2B", "3C50", "12", "1A2B", "3C51", "9",
        "1000", "00",
    ]  # fmt: skip


def _through(text: str, kind: Checksum) -> str:
    return checksum(kind, text.encode("ascii"))


def _roadrpa(fix: Fix) -> bytes:
    date = [fix.at.strftime("%d%m%Y"), fix.at.strftime("%H%M%S")]
    text = "$" + ",".join(_standard(fix, ["NRM"], ["ROADRPA", "1.7AIS"], date))
    text += f",{fix.frame:06d},"
    return (text + _through(text, "crc32")).encode()


def _teltonika(fix: Fix) -> bytes:
    date = [fix.at.strftime("%d%m%Y"), fix.at.strftime("%H%M%S")]
    fields = _standard(fix, ["TEL123"], ["Teltonika", "03.18.16"], date)
    text = "$" + ",".join([*fields, f"{fix.frame:06d}", "0.1", "0.2", "0", "()"]) + "*"
    return (text + _through(text, "xor8")).encode()


def _ctpl(fix: Fix) -> bytes:
    date = [fix.at.strftime("%d%m%Y"), fix.at.strftime("%H%M%S")]
    fields = _standard(fix, ["", "C"], ["CTPL", "4.0.0"], date)
    text = "$" + ",".join([*fields, str(fix.frame), f"{fix.frame * 0.05:.1f}"]) + ","
    return (text + _through(text, "xor8") + ",*").encode()


def _xyz(fix: Fix) -> bytes:
    a = fix.at
    date = [f"{a.day:02d}", f"{a.month:02d}", f"{a.year}", f"{a.hour:02d}", f"{a.minute:02d}"]
    fields = _standard(fix, ["", "03"], ["XYZ123", "0.0.1"], [*date, f"{a.second:02d}"])
    return ("$" + ",".join([*fields, f"{fix.frame:06d}", "01dbd51f", ""])).encode()


def _emergency(fix: Fix) -> bytes:
    """The emergency-server format, which a unit sends when the panic button is pressed."""
    stamp = fix.at.strftime("%d%m%Y%H%M%S")
    fields = [
        "EPB", "EMR", fix.imei, "NM" if fix.live else "SP", stamp, "A",
        *_coord(fix.lat, "N", "S"), *_coord(fix.lon, "E", "W"), "560.0",
        f"{fix.speed_kmh:.1f}", "0.0", "G", fix.reg, "+919800000000",
    ]  # fmt: skip
    text = "$" + ",".join(fields)
    return (text + "*" + _through(text, "crc32")).encode()


SHAPES: Final[dict[str, Callable[[Fix], bytes]]] = {
    "roadrpa": _roadrpa,
    "teltonika": _teltonika,
    "ctpl": _ctpl,
    "xyz123": _xyz,
}


def location(shape: str, fix: Fix) -> bytes:
    """A fix in a vendor's shape; a panic goes out in the emergency-server format."""
    return _emergency(fix) if fix.panic else SHAPES[shape](fix)


def login(shape: str, imei: str, reg: str) -> bytes:
    if shape == "xyz123":
        return f"$,01,XYZ123,0.0.1,{imei},{reg},".encode()
    return f"$LGN,,{imei},3.2AIH,18.520430,N,73.856743,E".encode()


def heartbeat(shape: str, imei: str) -> bytes:
    """A health packet: the numbered format's, or the standard's $HLM with the vendor's
    checksum."""
    if shape == "xyz123":
        return f"$,02,XYZ123,0.0.1,{imei},88,30,12.0,00010,00600,1000,01,00.1,00.0,".encode()
    vendor = {"roadrpa": "ROADRPA", "teltonika": "Teltonika", "ctpl": "CTPL"}[shape]
    text = f"$HLM,{vendor},1.0,{imei},88,20,5,10,60,1000,0.0"
    if shape == "teltonika":
        return (text + "*" + _through(text + "*", "xor8")).encode()
    text += ","
    kind: Checksum = "crc32" if shape == "roadrpa" else "xor8"
    return (text + _through(text, kind) + ("*" if shape == "roadrpa" else ",*")).encode()
