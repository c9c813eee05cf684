"""JSON payloads of the `v1` topics, as msgspec Structs, and their validation.

Every payload carries `v` (the payload version, 1), `vehicle` (must equal the
topic's), `ts` (the unit's time, integer milliseconds since the epoch, UTC) and
`seq` (the unit's message counter, one per kind, wrapping at 2**32; optional,
but without it duplicates and broker drops cannot be detected). Unknown fields
are ignored, so a unit may send more than v1 defines.

`check` turns bytes into a Struct or raises `PayloadError` whose `reason` is the
stable reject code (`bad_json`, `wrong_type`, `missing_field`, `bad_value`,
`bad_position`, `bad_version`, `spoofed_vehicle`, `future_timestamp`, `too_old`,
`oversized`, `unknown_signal`, `empty`); the README lists them.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

PAYLOAD_VERSION: Final = 1
NS_PER_MS: Final = 1_000_000

# the vehicle must equal the topic's, which topics.py has checked; only the length here
VehicleId = Annotated[str, Meta(max_length=32)]
Millis = Annotated[int, Meta(ge=0, le=2**53)]
Seq = Annotated[int, Meta(ge=0, le=2**32 - 1)]
Lat = Annotated[float, Meta(ge=-90.0, le=90.0)]
Lon = Annotated[float, Meta(ge=-180.0, le=180.0)]
Speed = Annotated[float, Meta(ge=0.0, le=300.0)]  # km/h
Heading = Annotated[float, Meta(ge=0.0, le=360.0)]

# health signals a `can` payload may carry, with their unit and a plausible range;
# a value outside the range is kept and flagged OUT_OF_RANGE, not rejected
CAN_QUANTITIES: Final[dict[str, tuple[str, float, float]]] = {
    "rpm": ("rpm", 0.0, 8031.875),
    "coolant_c": ("degC", -40.0, 210.0),
    "oil_kpa": ("kPa", 0.0, 1000.0),
    "fuel_lph": ("L/h", 0.0, 3212.75),
    "battery_v": ("V", 0.0, 64.0),
    "speed_kmh": ("km/h", 0.0, 250.996),
    "fuel_pct": ("%", 0.0, 100.0),
}


class Pvt(Struct, frozen=True, kw_only=True):
    """Position, velocity, time. `hist` marks a fix buffered while out of coverage."""

    v: int
    vehicle: VehicleId
    ts: Millis
    lat: Lat
    lon: Lon
    seq: Seq | None = None
    speed_kmh: Speed | None = None
    heading: Heading | None = None
    fix: Literal[0, 2, 3, 6] = 3
    sats: Annotated[int, Meta(ge=0, le=99)] | None = None
    hist: bool = False


class CanFrame(Struct, frozen=True):
    """A raw CAN frame: 29-bit identifier and up to 8 data bytes in hex."""

    id: Annotated[int, Meta(ge=0, le=0x1FFFFFFF)]
    data: Annotated[str, Meta(pattern=r"^(?:[0-9A-Fa-f]{2}){0,8}$")]


class Can(Struct, frozen=True, kw_only=True):
    """J1939 data: `signals` already decoded by the unit, or raw `frames`, or both."""

    v: int
    vehicle: VehicleId
    ts: Millis
    seq: Seq | None = None
    signals: dict[str, float] | None = None
    frames: list[CanFrame] | None = None
    hist: bool = False


class Lamps(Struct, frozen=True):
    """DM1 lamp status: 0 off, 1 on (J1939 2-bit fields; 2/3 are read as off)."""

    mil: Annotated[int, Meta(ge=0, le=3)] = 0
    red: Annotated[int, Meta(ge=0, le=3)] = 0
    amber: Annotated[int, Meta(ge=0, le=3)] = 0
    protect: Annotated[int, Meta(ge=0, le=3)] = 0


class FaultCode(Struct, frozen=True):
    spn: Annotated[int, Meta(ge=0, le=524287)]
    fmi: Annotated[int, Meta(ge=0, le=31)]
    oc: Annotated[int, Meta(ge=0, le=127)] = 0


class Dtc(Struct, frozen=True, kw_only=True):
    """DM1 active faults, decoded (`lamps` + `faults`) or as raw DM1 / TP.BAM `frames`.
    An empty `faults` list means every fault has cleared."""

    v: int
    vehicle: VehicleId
    ts: Millis
    seq: Seq | None = None
    lamps: Lamps = Lamps()
    faults: list[FaultCode] | None = None
    frames: list[CanFrame] | None = None


AlertKind = Literal[
    "panic",
    "panic_cleared",
    "tamper",
    "power_cut",
    "power_restored",
    "low_battery",
    "ignition_on",
    "ignition_off",
    "harsh_braking",
    "harsh_acceleration",
    "rash_turning",
    "overspeed",
]


class AlertMsg(Struct, frozen=True, kw_only=True):
    """An event the unit itself raises; `panic` is the emergency button."""

    v: int
    vehicle: VehicleId
    ts: Millis
    kind: AlertKind
    seq: Seq | None = None
    lat: Lat | None = None
    lon: Lon | None = None
    message: Annotated[str, Meta(max_length=256)] = ""


class Health(Struct, frozen=True, kw_only=True):
    """The tracking unit's own state (not the engine's)."""

    v: int
    vehicle: VehicleId
    ts: Millis
    seq: Seq | None = None
    unit_battery_v: Annotated[float, Meta(ge=0.0, le=20.0)] | None = None
    main_v: Annotated[float, Meta(ge=0.0, le=64.0)] | None = None
    gsm_csq: Annotated[int, Meta(ge=0, le=99)] | None = None
    firmware: Annotated[str, Meta(max_length=64)] = ""
    uptime_s: Annotated[int, Meta(ge=0)] | None = None
    ignition: bool | None = None


Payload = Pvt | Can | Dtc | AlertMsg | Health
DECODERS: Final[dict[str, msgspec.json.Decoder[Payload]]] = {
    "pvt": msgspec.json.Decoder(Pvt),
    "can": msgspec.json.Decoder(Can),
    "dtc": msgspec.json.Decoder(Dtc),
    "alert": msgspec.json.Decoder(AlertMsg),
    "health": msgspec.json.Decoder(Health),
}


class PayloadError(ValueError):
    """A payload refused at the door; `reason` is the stable reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 16_384
    max_future_s: float = 300.0  # a clock this far ahead is wrong, not early
    history_window_s: float = 7 * 86_400.0  # buffered data older than this is refused


def _validation_reason(message: str) -> str:
    if "missing required field" in message:
        return "missing_field"
    if message.startswith("Expected `") and "`, got `" in message:
        return "wrong_type"
    if "`$.lat`" in message or "`$.lon`" in message:
        return "bad_position"
    return "bad_value"


def check_time(ts_ms: int, now_ns: int, limits: Limits) -> int:
    """The payload time in ns, or PayloadError when it is too far ahead or too old."""
    ts = ts_ms * NS_PER_MS
    if ts > now_ns + int(limits.max_future_s * 1e9):
        ahead = (ts - now_ns) / 1e9
        raise PayloadError("future_timestamp", f"ts is {ahead:.0f} s ahead of the gateway clock")
    if ts < now_ns - int(limits.history_window_s * 1e9):
        age = (now_ns - ts) / 1e9
        hint = ""
        if abs(ts * 1000 - now_ns) <= int(limits.history_window_s * 1e9):
            hint = "; it looks like seconds since the epoch: ts is milliseconds (multiply by 1000)"
        raise PayloadError("too_old", f"ts is {age:.0f} s old, beyond the history window{hint}")
    return ts


def check(kind: str, data: bytes, vehicle: str, now_ns: int, limits: Limits = Limits()) -> Payload:
    """Decode and validate one JSON payload for the topic's `kind` and `vehicle`."""
    if len(data) > limits.max_bytes:
        raise PayloadError("oversized", f"{len(data)} bytes > max_bytes {limits.max_bytes}")
    if not data:
        raise PayloadError("empty", "empty payload")
    try:
        msg = DECODERS[kind].decode(data)
    except msgspec.ValidationError as err:
        text = str(err)
        raise PayloadError(_validation_reason(text), text) from None
    except msgspec.DecodeError as err:
        raise PayloadError("bad_json", str(err)) from None
    if msg.v != PAYLOAD_VERSION:
        raise PayloadError("bad_version", f"payload version {msg.v}, this gateway reads 1")
    if msg.vehicle != vehicle:
        raise PayloadError(
            "spoofed_vehicle", f"payload vehicle {msg.vehicle!r} on topic of {vehicle!r}"
        )
    check_time(msg.ts, now_ns, limits)
    if isinstance(msg, Can):
        if msg.signals is None and msg.frames is None:
            raise PayloadError("missing_field", "a can payload needs `signals` or `frames`")
        unknown = set(msg.signals or ()) - CAN_QUANTITIES.keys()
        if unknown:
            raise PayloadError("unknown_signal", f"unknown signals {sorted(unknown)}")
    if isinstance(msg, Dtc) and msg.faults is None and msg.frames is None:
        raise PayloadError("missing_field", "a dtc payload needs `faults` or `frames`")
    return msg
