"""Alerts and events: rare, so small frozen values rather than columns.

An event is a fact at one instant (a meter's tamper bit went up, a DTC was
reported). An alert is a condition with a lifecycle, judged by a rule or a
detector:

    opened --> updated* --> cleared
       \\          |           |
        +---------+-----------+--> acknowledged (by an operator, at any point)

Each transition returns a new Alert; the id stays the same, so sinks can
write alerts idempotently keyed by id and keep the latest state.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np


class AlertState(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLEARED = "cleared"


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


def alert_id(kind: str, asset: str, opened_at: int) -> str:
    """A stable id: the same condition opened at the same data time gets the
    same id in the field and in replay, which makes writes idempotent."""
    digest = hashlib.blake2b(f"{kind}|{asset}|{opened_at}".encode(), digest_size=8)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """Evidence and event data as strict JSON: no NaN or inf (null), no numpy
    types (their Python values), bytes as hex, anything else as its str()."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _frozen(evidence: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(evidence))


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    kind: str  # leak, burst, transient, sensor_fault, overspeed, ...
    asset: str  # dma-07, dma-07/pz-3, bus/MH12-KQ-4321
    severity: Severity
    opened_at: int  # ns UTC, data time at which it was raised (detected_at)
    message: str = ""
    started_at: int | None = None  # ns UTC, the estimated start of the condition
    magnitude: float = float("nan")  # in the kind's unit (L/s for leaks)
    score: float = float("nan")  # detector confidence in [0, 1]
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    state: AlertState = AlertState.OPENED
    updated_at: int | None = None
    cleared_at: int | None = None
    acked_by: str | None = None
    acked_at: int | None = None
    needs_ack: bool = False  # critical alerts an operator must confirm
    id: str = ""

    def __post_init__(self) -> None:
        if not self.kind or not self.asset:
            raise ValueError("an alert needs a kind and an asset")
        if not isinstance(self.severity, Severity):
            raise TypeError(f"severity must be a Severity, got {self.severity!r}")
        if not self.id:
            object.__setattr__(self, "id", alert_id(self.kind, self.asset, self.opened_at))
        object.__setattr__(self, "evidence", _frozen(self.evidence))
        if self.state is AlertState.CLEARED and self.cleared_at is None:
            raise ValueError("a cleared alert needs cleared_at")

    @property
    def detected_at(self) -> int:
        return self.opened_at

    @property
    def is_open(self) -> bool:
        return self.state is not AlertState.CLEARED

    @property
    def acknowledged(self) -> bool:
        return self.acked_by is not None

    def update(self, at: int, **changes: Any) -> Alert:
        """The same alert with new figures (magnitude, score, severity, evidence...)."""
        if not self.is_open:
            raise ValueError(f"alert {self.id} is cleared; open a new one instead")
        allowed = {"severity", "message", "magnitude", "score", "evidence", "started_at"}
        unknown = set(changes) - allowed
        if unknown:
            raise TypeError(f"cannot update {sorted(unknown)}; updatable: {sorted(allowed)}")
        return dataclasses.replace(self, state=AlertState.UPDATED, updated_at=at, **changes)

    def clear(self, at: int) -> Alert:
        if not self.is_open:
            return self
        return dataclasses.replace(self, state=AlertState.CLEARED, cleared_at=at, updated_at=at)

    def acknowledge(self, by: str, at: int) -> Alert:
        if not by.strip():
            raise ValueError("say who acknowledges the alert")
        if self.acknowledged:
            return self
        return dataclasses.replace(self, acked_by=by, acked_at=at)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["severity"] = self.severity.name.lower()
        out["state"] = self.state.value
        out["evidence"] = dict(self.evidence)
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """A fact at an instant: an alarm bit, a fault code, a meter replacement."""

    ts: int  # ns UTC
    asset: str
    kind: str  # tamper, low_battery, empty_pipe, meter_leak, dtc, rollover, replacement, ...
    message: str = ""
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind or not self.asset:
            raise ValueError("an event needs a kind and an asset")
        object.__setattr__(self, "data", _frozen(self.data))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "asset": self.asset,
            "kind": self.kind,
            "message": self.message,
            "data": dict(self.data),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    """An input refused at the door, kept for inspection with the reason."""

    ts: int  # ns UTC, when it was received
    source: str  # the driver and channel, e.g. 'mqtt:pmpml/v1/MH12-KQ-4321/pvt'
    reason: str  # a short stable code: bad_json, wrong_type, spoofed_vehicle, bad_checksum...
    detail: str = ""  # the human explanation
    payload: bytes = b""  # the raw input, truncated to MAX_PAYLOAD

    MAX_PAYLOAD = 4096

    def __post_init__(self) -> None:
        if len(self.payload) > self.MAX_PAYLOAD:
            object.__setattr__(self, "payload", self.payload[: self.MAX_PAYLOAD])
