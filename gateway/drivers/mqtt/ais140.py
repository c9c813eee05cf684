"""AIS-140 ASCII packets: location (live and history), login and heartbeat.

    $NRM,GWSIM,1.0.3,NR,01,L,861234567890123,MH12KQ4321,1,28112026,014501,18.520430,N,...*3F2A
     |    |     |     |  |  |                           |  date     time   lat
     |    |     |     |  |  +-- L live / H history (buffered while out of coverage)
     |    |     |     |  +-- alert id          |
     |    |     |     +-- packet type (NR normal, EA emergency, TA tamper, ...)
     |    +-- vendor id: picks the profile (ais140_profiles.toml) for the fields after HEAD
     +-- header

AIS-140 fixes the head of a location packet (HEAD, below); the tail and the
checksum vary by vendor, so they are data, not code. A packet either parses into a
frozen value or raises `PacketError` with a reject reason; it never raises anything else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

PROFILES_PATH: Final = Path(__file__).with_name("ais140_profiles.toml")
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

# AIS-140 alert ids the gateway turns into events (the rest are location updates)
ALERT_KINDS: Final[dict[int, str]] = {
    3: "power_cut",
    4: "low_battery",
    5: "low_battery_removed",
    6: "power_restored",
    7: "ignition_on",
    8: "ignition_off",
    9: "tamper",
    10: "panic",
    11: "panic_cleared",
    13: "harsh_braking",
    14: "harsh_acceleration",
    15: "rash_turning",
    17: "overspeed",
}

Checksum = Literal["xor8", "crc16", "none"]


class PacketError(ValueError):
    """An AIS-140 packet refused; `reason` is the reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    name: str
    vendors: tuple[str, ...]
    checksum: Checksum
    location_headers: tuple[str, ...]
    tail: tuple[str, ...]
    login_headers: tuple[str, ...]
    login: tuple[str, ...]
    heartbeat_headers: tuple[str, ...]
    heartbeat: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if self.checksum not in ("xor8", "crc16", "none"):
            raise ValueError(f"profile {self.name}: checksum must be xor8, crc16 or none")
        if "frame_number" not in self.tail:
            raise ValueError(f"profile {self.name}: tail must name the frame_number field")


def load_profiles(path: Path = PROFILES_PATH) -> dict[str, Profile]:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    profiles: dict[str, Profile] = {}
    for name, spec in raw.get("profiles", {}).items():
        try:
            profiles[name] = Profile(
                name=name,
                vendors=tuple(spec["vendors"]),
                checksum=spec["checksum"],
                location_headers=tuple(spec["location_headers"]),
                tail=tuple(spec["tail"]),
                login_headers=tuple(spec["login_headers"]),
                login=tuple(spec["login"]),
                heartbeat_headers=tuple(spec["heartbeat_headers"]),
                heartbeat=tuple(spec["heartbeat"]),
                description=spec.get("description", ""),
            )
        except KeyError as err:
            raise ValueError(f"{path}: profiles.{name} lacks key {err}") from None
    defaults = [p for p in profiles.values() if not p.vendors]
    if len(defaults) != 1:
        raise ValueError(f"{path}: exactly one profile must have vendors = [] (the default)")
    return profiles


def xor8(body: bytes) -> str:
    acc = 0
    for byte in body:
        acc ^= byte
    return f"{acc:02X}"


def crc16(body: bytes) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in body:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def checksum_of(body: bytes, kind: Checksum) -> str:
    return xor8(body) if kind == "xor8" else crc16(body) if kind == "crc16" else ""


def frame(fields: Sequence[str], kind: Checksum) -> bytes:
    """Build a packet from its fields (the first is the header without '$')."""
    body = ",".join(fields).encode("ascii")
    return b"$" + body + b"*" + checksum_of(body, kind).encode("ascii")


def build_location(profile: Profile, values: Mapping[str, str]) -> bytes:
    """A location packet from named values (missing ones are sent empty)."""
    return frame([values.get(name, "") for name in (*HEAD, *profile.tail)], profile.checksum)


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    profile: str
    vendor: str
    packet_type: str
    alert_id: int
    live: bool  # False: a history packet, stored but raising no live alerts
    imei: str
    vehicle_reg: str
    gps_fix: bool
    ts_ns: int
    lat: float
    lon: float
    speed_kmh: float
    heading: float
    sats: int
    ignition: bool
    main_power: bool
    main_v: float
    battery_v: float
    emergency: bool
    tamper: bool
    gsm_signal: int
    frame_number: int
    extra: Mapping[str, str]

    @property
    def alert_kind(self) -> str | None:
        if self.emergency or self.packet_type == "EA":
            return "panic"
        return ALERT_KINDS.get(self.alert_id)


@dataclasses.dataclass(frozen=True, slots=True)
class Login:
    profile: str
    vehicle_reg: str
    imei: str
    firmware: str
    protocol: str
    lat: float
    lon: float


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    profile: str
    vendor: str
    firmware: str
    imei: str
    battery_pct: float
    fields: Mapping[str, str]


Packet = Location | Login | Heartbeat


def normalise_reg(text: str) -> str:
    """'MH12-KQ-4321' and 'MH12KQ4321' name the same bus."""
    return "".join(c for c in text.upper() if c.isalnum())


def _float(fields: Mapping[str, str], name: str, lo: float, hi: float) -> float:
    try:
        value = float(fields[name])
    except ValueError:
        raise PacketError("bad_field", f"{name}={fields[name]!r} is not a number") from None
    if not lo <= value <= hi:  # also refuses NaN
        reason = "bad_position" if name in ("lat", "lon") else "bad_field"
        raise PacketError(reason, f"{name}={value} outside [{lo}, {hi}]")
    return value


def _int(fields: Mapping[str, str], name: str, lo: int, hi: int) -> int:
    text = fields[name]
    if not text.isdigit():
        raise PacketError("bad_field", f"{name}={text!r} is not an unsigned integer")
    value = int(text)
    if not lo <= value <= hi:
        raise PacketError("bad_field", f"{name}={value} outside [{lo}, {hi}]")
    return value


def _flag(fields: Mapping[str, str], name: str) -> bool:
    text = fields[name]
    if text not in ("0", "1"):
        raise PacketError("bad_field", f"{name}={text!r} is not 0 or 1")
    return text == "1"


def _signed(fields: Mapping[str, str], value: str, direction: str, neg: str, pos: str) -> float:
    got = _float(fields, value, 0.0, 180.0)
    hemi = fields[direction]
    if hemi not in (neg, pos):
        raise PacketError("bad_position", f"{direction}={hemi!r} is not {pos} or {neg}")
    return -got if hemi == neg else got


def _time(fields: Mapping[str, str]) -> int:
    date, clock = fields["date"], fields["time"]
    try:
        stamp = dt.datetime.strptime(date + clock, "%d%m%Y%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        raise PacketError(
            "bad_field", f"date/time {date!r} {clock!r} not ddmmyyyy hhmmss"
        ) from None
    return int(stamp.timestamp()) * 1_000_000_000


class Ais140Parser:
    """Parses packets with the vendor profiles; stateless, so one serves every unit."""

    def __init__(self, profiles: Mapping[str, Profile] | None = None) -> None:
        self.profiles = dict(profiles) if profiles is not None else load_profiles()
        self._by_vendor = {v: p for p in self.profiles.values() for v in p.vendors}
        self._default = next(p for p in self.profiles.values() if not p.vendors)

    def profile_for(self, vendor: str) -> Profile:
        return self._by_vendor.get(vendor, self._default)

    def parse(self, data: bytes) -> Packet:
        if len(data) > MAX_PACKET:
            raise PacketError("oversized", f"{len(data)} bytes > {MAX_PACKET}")
        packet = data.strip()
        if not packet.startswith(b"$"):
            raise PacketError("bad_packet", "an AIS-140 packet starts with '$'")
        try:
            text = packet.decode("ascii")
        except UnicodeDecodeError:
            raise PacketError("bad_packet", "an AIS-140 packet is ASCII") from None
        body, star, given = text[1:].partition("*")
        if "*" in given or "$" in body:
            raise PacketError("bad_packet", "more than one '*' or '$' in the packet")
        fields = body.split(",")
        header = fields[0]
        logins = [
            p
            for p in self.profiles.values()
            if header in p.login_headers and len(fields) - 1 == len(p.login)
        ]
        if logins:
            # a login names no vendor: the profile whose checksum holds is the one
            failure: PacketError | None = None
            for profile in logins:
                try:
                    self._verify(profile, body, star, given)
                except PacketError as err:
                    failure = err
                    continue
                return self._login(profile, fields)
            assert failure is not None
            raise failure
        if len(fields) >= 2:
            profile = self.profile_for(fields[1])
            if header in profile.heartbeat_headers and len(fields) - 1 == len(profile.heartbeat):
                self._verify(profile, body, star, given)
                return self._heartbeat(profile, fields)
        if any(header in (*p.login_headers, *p.heartbeat_headers) for p in self.profiles.values()):
            raise PacketError("wrong_field_count", f"{header} packet with {len(fields)} fields")
        if len(fields) < 2:
            raise PacketError("bad_packet", f"header {header!r} and no fields")
        profile = self.profile_for(fields[1])
        if header not in profile.location_headers:
            raise PacketError("unknown_header", f"header {header!r} for profile {profile.name}")
        self._verify(profile, body, star, given)
        names = (*HEAD, *profile.tail)
        if len(fields) != len(names):
            raise PacketError(
                "wrong_field_count",
                f"{len(fields)} fields, profile {profile.name} expects {len(names)}",
            )
        return self._location(profile, dict(zip(names, fields, strict=True)))

    def _verify(self, profile: Profile, body: str, star: str, given: str) -> None:
        if profile.checksum == "none":
            return
        if not star:
            raise PacketError("bad_checksum", f"no checksum; profile {profile.name} needs one")
        want = checksum_of(body.encode("ascii"), profile.checksum)
        if given.upper() != want:
            raise PacketError("bad_checksum", f"checksum {given!r}, computed {want!r}")

    def _location(self, profile: Profile, f: dict[str, str]) -> Location:
        if f["packet_status"] not in ("L", "H"):
            raise PacketError("bad_field", f"packet_status {f['packet_status']!r} is not L or H")
        lat = _signed(f, "lat", "lat_dir", "S", "N")
        lon = _signed(f, "lon", "lon_dir", "W", "E")
        if not -90.0 <= lat <= 90.0:
            raise PacketError("bad_position", f"lat={lat} outside [-90, 90]")
        known = set(HEAD) | {"frame_number"}
        return Location(
            profile=profile.name,
            vendor=f["vendor_id"],
            packet_type=f["packet_type"],
            alert_id=_int(f, "alert_id", 0, 99),
            live=f["packet_status"] == "L",
            imei=f["imei"],
            vehicle_reg=f["vehicle_reg"],
            gps_fix=_flag(f, "gps_fix"),
            ts_ns=_time(f),
            lat=lat,
            lon=lon,
            speed_kmh=_float(f, "speed_kmh", 0.0, 300.0),
            heading=_float(f, "heading", 0.0, 360.0),
            sats=_int(f, "sats", 0, 99),
            ignition=_flag(f, "ignition"),
            main_power=_flag(f, "main_power"),
            main_v=_float(f, "main_v", 0.0, 64.0),
            battery_v=_float(f, "battery_v", 0.0, 20.0),
            emergency=_flag(f, "emergency"),
            tamper=f["tamper"] in ("O", "1"),  # 'C' cover closed, 'O' opened
            gsm_signal=_int(f, "gsm_signal", 0, 99),
            frame_number=_int(f, "frame_number", 0, 999_999),
            extra={k: v for k, v in f.items() if k not in known},
        )

    def _login(self, profile: Profile, fields: list[str]) -> Login:
        f = dict(zip(profile.login, fields[1:], strict=True))
        return Login(
            profile=profile.name,
            vehicle_reg=f["vehicle_reg"],
            imei=f["imei"],
            firmware=f["firmware"],
            protocol=f["protocol"],
            lat=_signed(f, "lat", "lat_dir", "S", "N"),
            lon=_signed(f, "lon", "lon_dir", "W", "E"),
        )

    def _heartbeat(self, profile: Profile, fields: list[str]) -> Heartbeat:
        f = dict(zip(profile.heartbeat, fields[1:], strict=True))
        return Heartbeat(
            profile=profile.name,
            vendor=f["vendor_id"],
            firmware=f["firmware"],
            imei=f["imei"],
            battery_pct=_float(f, "battery_pct", 0.0, 100.0),
            fields=f,
        )
