"""The decoded packets, as frozen values, and the parser's one error type.

A location carries what AIS-140 fixes in every vendor's packet; a field a vendor
leaves out, or sends in a shape the gateway cannot read, is None (and its text
is kept in `extra`), because losing a bus's position over its battery voltage
helps no one. The position itself (date, time, latitude, longitude) is never
guessed: a packet without one is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final, Literal

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

# AIS-140 packet types that name an event, for units whose alert ids are their own
PACKET_TYPE_KINDS: Final[dict[str, str]] = {
    "EA": "panic",
    "TA": "tamper",
    "BD": "power_cut",
    "BR": "power_restored",
    "BL": "low_battery",
    "HB": "harsh_braking",
    "HA": "harsh_acceleration",
    "RT": "rash_turning",
    "OS": "overspeed",
    "IN": "ignition_on",
    "IF": "ignition_off",
}

Checked = Literal["ok", "unverified", "mismatch"]
BeatKind = Literal["heartbeat", "health"]


class PacketError(ValueError):
    """An AIS-140 packet refused; `reason` is the stable reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    """A position report. `alarm`: the packet reports an emergency (packet type EA,
    the emergency-server format $EPB,EMR, or, in the fixed layouts, the emergency
    flag); `emergency` is the flag as sent, which some vendors set in normal
    packets. `emergency_message` marks $EPB,EMR|SEM, `stop_emergency` its SEM."""

    profile: str
    vendor: str
    header: str
    packet_type: str
    alert_id: int | None
    live: bool  # False: a history packet, stored but raising no live alerts
    imei: str
    vehicle_reg: str
    gps_fix: bool
    ts_ns: int | None  # None: the unit sent no date (all zeros)
    lat: float
    lon: float
    speed_kmh: float | None
    heading: float | None
    checksum: Checked
    sats: int | None = None
    altitude_m: float | None = None
    ignition: bool | None = None
    main_power: bool | None = None
    main_v: float | None = None
    battery_v: float | None = None
    emergency: bool = False
    alarm: bool = False
    tamper: bool | None = None
    gsm_signal: int | None = None
    frame_number: int | None = None
    odometer_km: float | None = None
    emergency_message: bool = False
    stop_emergency: bool = False
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def type(self) -> str:
        return "emergency" if self.alarm or self.emergency_message else "location"

    @property
    def alert_kind(self) -> str | None:
        if self.stop_emergency:
            return "panic_cleared"
        if self.alarm:
            return "panic"
        if self.packet_type == "NR":  # normal: whatever alert id a vendor puts beside it
            return None
        kind = PACKET_TYPE_KINDS.get(self.packet_type)
        if kind is None and self.alert_id is not None:
            kind = ALERT_KINDS.get(self.alert_id)
        return kind

    @property
    def has_position(self) -> bool:
        """False for a unit without a fix that sends 0,0 (nothing to draw on a map)."""
        return self.gps_fix or self.lat != 0.0 or self.lon != 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Login:
    profile: str
    vendor: str
    vehicle_reg: str
    imei: str
    firmware: str
    protocol: str
    lat: float | None
    lon: float | None
    checksum: Checked

    @property
    def type(self) -> str:
        return "login"


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """A heartbeat (`HBT`, `HLT`) or health packet (`HLM`, a vendor's own)."""

    profile: str
    vendor: str
    firmware: str
    imei: str
    battery_pct: float | None
    kind: BeatKind
    checksum: Checked
    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.kind


Packet = Location | Login | Heartbeat


def normalise_reg(text: str) -> str:
    """'MH12-KQ-4321' and 'MH12KQ4321' name the same bus."""
    return "".join(c for c in text.upper() if c.isalnum())
