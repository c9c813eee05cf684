"""Ais140Parser: bytes of one packet in, a frozen value out, or PacketError.

    frame --split--> Frame --vendor id--> profile
        fixed profile, packet fits its layout  --> fields by position (strict)
        anchored profile                        --> fields by shape + profile's tail
        unknown vendor, default does not fit    --> fields by shape, profile "generic"
    --> checksum: ok | unverified (algorithm unknown, or none sent) | mismatch (kept)
    --> Location | Login | Heartbeat

Fixed layouts are strict: a field that does not read is a reject (`bad_field`).
Anchored and generic reads keep the position and leave an unreadable auxiliary
field as None, its text in `extra`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Final

from gateway.drivers.ais140 import grammar
from gateway.drivers.ais140.checksums import COMPUTE, PLACES, SPANS
from gateway.drivers.ais140.packets import (
    BeatKind,
    Checked,
    Heartbeat,
    Location,
    Login,
    Packet,
    PacketError,
)
from gateway.drivers.ais140.profiles import GENERIC, Profile, load_profiles

LOGIN_HEADERS: Final = frozenset({"LGN"})
HEARTBEAT_HEADERS: Final = frozenset({"HBT", "HLT"})
HEALTH_HEADERS: Final = frozenset({"HLM", "HLP", "HCK"})
_BY_LENGTH: Final = {2: "xor8", 4: "crc16", 8: "crc32"}
_FLAGS: Final = {"0": False, "1": True, "A": True, "V": False}
_SHAPE_MISSES: Final = frozenset({"no_position", "no_imei"})
_KNOWN: Final = frozenset(
    {*grammar.HEAD, "frame_number", "odometer_km", "message_type", "emergency_status", "reg"}
)


class Ais140Parser:
    """Parses packets with the vendor profiles; stateless, so one serves every unit."""

    def __init__(self, profiles: Mapping[str, Profile] | None = None) -> None:
        self.profiles = dict(profiles) if profiles is not None else load_profiles()
        self._by_vendor = {v: p for p in self.profiles.values() for v in p.vendors}
        self._default = next(p for p in self.profiles.values() if not p.vendors)
        self._fixed = [p for p in self.profiles.values() if p.layout == "fixed"]

    def profile_for(self, vendor: str) -> Profile:
        return self._by_vendor.get(vendor, self._default)

    def parse(self, data: bytes) -> Packet:
        frame = grammar.split(data)
        listed = self._by_vendor.get(frame.vendor)
        profile = listed or self._default
        if profile.layout == "anchored":
            return self._anchored(profile, frame)
        try:
            return self._fixed_layout(profile, frame)
        except _NoFit as miss:
            if listed is not None:
                raise miss.error from None
            fit_error = miss.error
        except PacketError as err:
            # the default layout's XOR is a guess for a vendor no profile lists: if it
            # does not hold, the generic profile reads the packet (checksum unverified)
            if listed is not None or err.reason != "bad_checksum":
                raise
            fit_error = err
        try:
            return self._anchored(None, frame)
        except PacketError as err:
            raise (fit_error if err.reason in _SHAPE_MISSES else err) from None

    # -- fixed layouts ---------------------------------------------------------------

    def _fixed_layout(self, profile: Profile, frame: grammar.Frame) -> Packet:
        fields, header = frame.fields, frame.header
        # a fixed login names no vendor: the profile whose checksum holds is the one
        logins = [p for p in self._fixed if header in p.login_headers]
        fitting = [p for p in logins if len(fields) - 1 == len(p.login)]
        failure: PacketError | None = None
        for candidate in fitting:
            try:
                checked, _ = self._checksum(candidate, frame)
            except PacketError as err:
                failure = err
                continue
            named = dict(zip(candidate.login, fields[1:], strict=True))
            return _login(candidate.name, named, checked, strict=True)
        if failure is not None:
            raise failure
        if header in profile.heartbeat_headers and len(fields) - 1 == len(profile.heartbeat):
            checked, _ = self._checksum(profile, frame)
            named = dict(zip(profile.heartbeat, fields[1:], strict=True))
            return _heartbeat(profile.name, named, checked, "heartbeat", strict=True)
        if logins or header in profile.heartbeat_headers:
            raise _NoFit("wrong_field_count", f"{header} packet with {len(fields)} fields")
        if header not in profile.location_headers:
            raise _NoFit("unknown_header", f"header {header!r} for profile {profile.name}")
        names = (*grammar.HEAD, *profile.tail)
        if len(fields) != len(names):
            raise _NoFit(
                "wrong_field_count",
                f"{len(fields)} fields, profile {profile.name} expects {len(names)}",
            )
        checked, _ = self._checksum(profile, frame)
        named = dict(zip(names, fields, strict=True))
        return _location(profile.name, named, checked, True, profile.utc_offset_minutes)

    # -- anchored and generic ------------------------------------------------------

    def _anchored(self, profile: Profile | None, frame: grammar.Frame) -> Packet:
        name = profile.name if profile is not None else GENERIC
        checked, fields = self._checksum(profile, frame) if profile else _guess(frame)
        header = fields[0]
        if header in LOGIN_HEADERS or (profile is not None and header in profile.login_headers):
            return _login(name, grammar.read_login(fields), checked, strict=False)
        beats = profile.heartbeat_headers if profile else ()
        health = profile.health_headers if profile else ()
        if header in HEARTBEAT_HEADERS or header in beats:
            named = grammar.read_heartbeat(fields, profile.heartbeat if profile else ())
            return _heartbeat(name, named, checked, "heartbeat", strict=False)
        if header in HEALTH_HEADERS or header in health:
            named = grammar.read_heartbeat(fields, profile.health if profile else ())
            return _heartbeat(name, named, checked, "health", strict=False)
        tail = profile.tail_for(frame.fields[2] if len(frame.fields) > 2 else "") if profile else ()
        try:
            named = grammar.read_location(fields, tail)
        except PacketError:
            if "AIS140" in fields:  # a login by another name ($Header,...,AIS140,lat,N,lon,E)
                return _login(name, grammar.read_login(fields), checked, strict=False)
            raise
        if frame.trailer:
            named["trailer"] = frame.trailer
        offset = profile.utc_offset_minutes if profile is not None else 0
        return _location(name, named, checked, False, offset)

    # -- checksums -------------------------------------------------------------------

    def _checksum(self, profile: Profile, frame: grammar.Frame) -> tuple[Checked, tuple[str, ...]]:
        """The verdict and the fields without a checksum field."""
        fields = frame.fields
        if profile.checksum_at == "last_field" and profile.checksum != "none":
            i = grammar.last_field(frame)
            if i is not None:
                fields = fields[:i]
        if profile.checksum == "any":
            return _guess(frame)
        if profile.checksum in ("none", "unknown"):
            return "unverified", fields
        got = grammar.claimed(frame, profile.checksum_at)
        if got is None:
            if profile.on_mismatch == "reject":
                raise PacketError("bad_checksum", f"no checksum; profile {profile.name} needs one")
            return "unverified", fields
        text, start = got
        want = COMPUTE[profile.checksum](grammar.covered(frame, profile.checksum_span, start))
        if text.upper() == want:
            return "ok", fields
        if profile.on_mismatch == "reject":
            raise PacketError("bad_checksum", f"checksum {text!r}, computed {want!r}")
        return "mismatch", fields


def _guess(frame: grammar.Frame) -> tuple[Checked, tuple[str, ...]]:
    """For the generic profile: `ok` if a checksum the packet carries verifies under one
    of the algorithms and spans vendors use (then a checksum field is dropped), else
    `unverified`: with the algorithm unknown, a mismatch says nothing."""
    for place in PLACES:
        got = grammar.claimed(frame, place)
        if got is None:
            continue
        text, start = got
        algorithm = _BY_LENGTH.get(len(text))
        if algorithm is None:
            continue
        for span in SPANS:
            if COMPUTE[algorithm](grammar.covered(frame, span, start)) == text.upper():
                i = grammar.last_field(frame) if place == "last_field" else None
                return "ok", frame.fields if i is None else frame.fields[:i]
    return "unverified", frame.fields


class _NoFit(Exception):
    """The packet is not of this fixed layout (the generic profile may still read it)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.error = PacketError(reason, detail)


# -- field conversion --------------------------------------------------------------


def _number(f: Mapping[str, str], name: str, lo: float, hi: float, strict: bool) -> float | None:
    text = f.get(name)
    if text is None:
        if strict:
            raise PacketError("bad_field", f"{name} missing")
        return None
    try:
        value = float(text)
    except ValueError:
        if strict:
            raise PacketError("bad_field", f"{name}={text!r} is not a number") from None
        return None
    if not lo <= value <= hi:  # also refuses NaN
        if strict:
            raise PacketError("bad_field", f"{name}={value} outside [{lo}, {hi}]")
        return None
    return value


def _count(f: Mapping[str, str], name: str, hi: int, strict: bool) -> int | None:
    text = f.get(name, "")
    if not text.isdigit() or int(text) > hi:
        if strict:
            raise PacketError("bad_field", f"{name}={text!r} is not an integer in [0, {hi}]")
        return None
    return int(text)


def _flag(f: Mapping[str, str], name: str, strict: bool) -> bool | None:
    text = f.get(name, "")
    if strict and text not in ("0", "1"):
        raise PacketError("bad_field", f"{name}={text!r} is not 0 or 1")
    return _FLAGS.get(text)


def _degrees(
    f: Mapping[str, str], name: str, neg: str, pos: str, hi: float, *, strict: bool = True
) -> float:
    text, hemi = f[name], f[name + "_dir"]
    try:
        value = float(text)
    except ValueError:
        raise PacketError("bad_position", f"{name}={text!r} is not a number") from None
    if not strict and value > hi:
        # NMEA's ddmm.mmmm (dddmm.mmmm); zero-padded degrees (00028.45) are not
        degrees, minutes = divmod(value, 100.0)
        if minutes >= 60.0:
            raise PacketError("bad_position", f"{name}={text!r}: {minutes:.4f} minutes")
        value = degrees + minutes / 60.0
    if not 0.0 <= value <= hi:
        raise PacketError("bad_position", f"{name}={value} outside [0, {hi}]")
    if hemi not in (neg, pos):
        raise PacketError("bad_position", f"{name}_dir={hemi!r} is not {pos} or {neg}")
    return -value if hemi == neg else value


def _time(f: Mapping[str, str], strict: bool) -> int | None:
    date, clock = f["date"], f["time"]
    if not strict and not (date + clock).strip("0"):
        return None  # a unit that has no time yet sends zeros
    text = date + clock
    try:
        if len(text) != 14 or not text.isdigit():
            raise ValueError(text)
        stamp = dt.datetime(
            int(text[4:8]), int(text[2:4]), int(text[:2]),
            int(text[8:10]), int(text[10:12]), int(text[12:14]), tzinfo=dt.UTC,
        )  # fmt: skip
    except ValueError:
        raise PacketError(
            "bad_field", f"date/time {date!r} {clock!r} not ddmmyyyy hhmmss"
        ) from None
    return int(stamp.timestamp()) * 1_000_000_000


def _location(
    profile: str, f: dict[str, str], checked: Checked, strict: bool, offset_min: int
) -> Location:
    status = f.get("packet_status", "")
    if strict and status not in ("L", "H"):
        raise PacketError("bad_field", f"packet_status {status!r} is not L or H")
    message = f.get("message_type", "")
    live = status not in ("H", "S") and f.get("emergency_status") != "SP"
    lat = _degrees(f, "lat", "S", "N", 90.0, strict=strict)
    lon = _degrees(f, "lon", "W", "E", 180.0, strict=strict)
    emergency = _flag(f, "emergency", strict) or False
    tamper = f.get("tamper")
    ts = _time(f, strict)
    if ts is not None:
        ts -= offset_min * 60_000_000_000  # the unit's clock is local time
    return Location(
        profile=profile,
        vendor=f.get("vendor_id", ""),
        header=f["header"],
        packet_type=f.get("packet_type", message),
        alert_id=_count(f, "alert_id", 99, strict),
        live=live,
        imei=f["imei"],
        vehicle_reg=f.get("vehicle_reg") or f.get("reg", ""),
        gps_fix=_flag(f, "gps_fix", strict) or False,
        ts_ns=ts,
        lat=lat,
        lon=lon,
        speed_kmh=_number(f, "speed_kmh", 0.0, 300.0, strict),
        heading=None if message else _number(f, "heading", 0.0, 360.0, strict),
        checksum=checked,
        sats=_count(f, "sats", 99, strict),
        altitude_m=_number(f, "altitude_m", -1000.0, 10_000.0, False),
        ignition=_flag(f, "ignition", strict),
        main_power=_flag(f, "main_power", strict),
        main_v=_number(f, "main_v", 0.0, 64.0, strict),
        battery_v=_number(f, "battery_v", 0.0, 20.0, strict),
        emergency=emergency,
        alarm=message == "EMR" or f.get("packet_type") == "EA" or (strict and emergency),
        tamper=None if tamper is None else tamper in ("O", "1"),  # C closed, O opened
        gsm_signal=_count(f, "gsm_signal", 99, strict),
        frame_number=_count(f, "frame_number", 99_999_999 if not strict else 999_999, strict),
        odometer_km=_number(f, "odometer_km", 0.0, 1e8, False),
        emergency_message=bool(message),
        stop_emergency=message == "SEM",
        extra={k: v for k, v in f.items() if k not in _KNOWN},
    )


def _login(profile: str, f: dict[str, str], checked: Checked, strict: bool) -> Login:
    lat = lon = None
    if strict or "lat" in f:
        lat = _degrees(f, "lat", "S", "N", 90.0, strict=strict)
        lon = _degrees(f, "lon", "W", "E", 180.0, strict=strict)
    return Login(
        profile=profile,
        vendor=f.get("vendor_id", ""),
        vehicle_reg=f.get("vehicle_reg", ""),
        imei=f["imei"],
        firmware=f.get("firmware", ""),
        protocol=f.get("protocol", ""),
        lat=lat,
        lon=lon,
        checksum=checked,
    )


def _heartbeat(
    profile: str, f: dict[str, str], checked: Checked, kind: BeatKind, strict: bool
) -> Heartbeat:
    return Heartbeat(
        profile=profile,
        vendor=f.get("vendor_id", ""),
        firmware=f.get("firmware", ""),
        imei=f.get("imei", ""),
        battery_pct=_number(f, "battery_pct", 0.0, 100.0, strict),
        kind=kind,
        checksum=checked,
        fields=f,
    )
