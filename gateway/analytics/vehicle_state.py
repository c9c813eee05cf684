"""Per-vehicle state for the vehicle rules: growable arrays, debounced conditions, open alerts.

RuleContext   what every rule shares: settings, thresholds per vehicle, the alert book
VehicleTable  named arrays indexed by interned vehicle id; grows with the fleet
Condition     one rule's hysteresis state (a debounce kernel over a table)
AlertBook     the open alerts, so each opens once and clears once
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import vehicle_kernels as k
from gateway.analytics.vehicle_settings import ThresholdTable, VehicleRulesSettings
from gateway.events import Alert, Severity, alert_id
from gateway.streams import Interner


class VehicleTable:
    """Named 1-D arrays, one slot per vehicle id, each with its fill value.
    Grows by doubling so interning new buses stays amortised O(1)."""

    def __init__(self, spec: Mapping[str, tuple[Any, Any]]) -> None:
        self.spec = dict(spec)
        self.capacity = 0
        self.arrays: dict[str, NDArray[Any]] = {
            name: np.empty(0, dtype) for name, (dtype, _) in self.spec.items()
        }

    def ensure(self, n: int) -> None:
        if n <= self.capacity:
            return
        new = max(n, 2 * self.capacity, 64)
        for name, (dtype, fill) in self.spec.items():
            grown = np.full(new, fill, dtype)
            grown[: self.capacity] = self.arrays[name]
            self.arrays[name] = grown
        self.capacity = new

    def __getitem__(self, name: str) -> NDArray[Any]:
        return self.arrays[name]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Transitions:
    """The rows of a batch where a condition opened or cleared."""

    rows: NDArray[np.intp]
    opened: NDArray[np.bool_]  # else cleared
    since: NDArray[np.int64]  # start of the run that opened the condition
    peak: NDArray[np.float64]

    def __iter__(self) -> Iterator[tuple[int, bool, int, float]]:
        for r, o, s, p in zip(self.rows, self.opened, self.since, self.peak, strict=True):
            yield int(r), bool(o), int(s), float(p)


class Condition:
    """One rule's condition per vehicle, with hysteresis and minimum durations
    (see `vehicle_kernels.debounce`)."""

    def __init__(self, *, min_on: int = 1, min_off: int = 1, max_gap_s: float = 120.0) -> None:
        self.min_on = min_on
        self.min_off = min_off
        self.max_gap_ns = round(max_gap_s * 1e9)
        self.state = VehicleTable(
            {
                "active": (np.bool_, False),
                "last_ts": (np.int64, k.NEVER),
                "on_since": (np.int64, k.NEVER),
                "on_n": (np.int32, 0),
                "off_since": (np.int64, k.NEVER),
                "off_n": (np.int32, 0),
                "peak": (np.float64, np.nan),
            }
        )

    def ensure(self, n: int) -> None:
        self.state.ensure(n)

    def reset(self, vehicle: int) -> None:
        """Forget a vehicle's condition (its alert is cleared by the caller)."""
        if vehicle < self.state.capacity:
            for name, (_, fill) in self.state.spec.items():
                self.state[name][vehicle] = fill

    def run(
        self,
        vehicle: NDArray[np.int32],
        ts: NDArray[np.int64],
        *,
        on: NDArray[np.bool_],
        off: NDArray[np.bool_],
        badness: NDArray[np.float64],
        hold_on_ns: NDArray[np.int64],
        hold_off_ns: NDArray[np.int64],
    ) -> Transitions:
        """Feed rows in time order; rows with neither a verdict nor a value should be
        dropped by the caller (NaN input is unknown, not 'fine')."""
        n = len(ts)
        out = np.empty(n, np.int8)
        since = np.empty(n, np.int64)
        peak = np.empty(n, np.float64)
        s = self.state
        k.debounce(
            vehicle,
            ts,
            on,
            off,
            badness,
            hold_on_ns,
            hold_off_ns,
            self.min_on,
            self.min_off,
            self.max_gap_ns,
            s["active"],
            s["last_ts"],
            s["on_since"],
            s["on_n"],
            s["off_since"],
            s["off_n"],
            s["peak"],
            out,
            since,
            peak,
        )
        rows = np.flatnonzero(out >= k.OPENED)
        return Transitions(rows, out[rows] == k.OPENED, since[rows], peak[rows])


class AlertBook:
    """The open alerts of the vehicle rules, keyed by (kind, vehicle, key).
    Opening an open one or clearing a clear one returns None, so a rule cannot
    raise the same condition twice."""

    def __init__(self, vehicles: Interner) -> None:
        self.vehicles = vehicles
        self._open: dict[tuple[str, int, str], Alert] = {}
        self._keys: dict[tuple[str, int], set[str]] = {}  # keyed alerts (DTCs) per vehicle

    def asset(self, vehicle: int) -> str:
        return f"bus/{self.vehicles.name_of(vehicle)}"

    def get(self, kind: str, vehicle: int, key: str = "") -> Alert | None:
        return self._open.get((kind, vehicle, key))

    def open(
        self,
        kind: str,
        vehicle: int,
        at: int,
        severity: Severity,
        message: str,
        *,
        started_at: int | None = None,
        magnitude: float = float("nan"),
        evidence: Mapping[str, Any] | None = None,
        needs_ack: bool = False,
        key: str = "",
    ) -> Alert | None:
        slot = (kind, vehicle, key)
        if slot in self._open:
            return None
        asset = self.asset(vehicle)
        alert = Alert(
            kind=kind,
            asset=asset,
            severity=severity,
            opened_at=at,
            message=message,
            started_at=started_at,
            magnitude=magnitude,
            evidence=dict(evidence or {}),
            needs_ack=needs_ack,
            # a key (a DTC's spn/fmi) joins the id, so two faults raised together differ
            id=alert_id(f"{kind}/{key}" if key else kind, asset, at),
        )
        self._open[slot] = alert
        if key:
            self._keys.setdefault((kind, vehicle), set()).add(key)
        return alert

    def update(
        self, kind: str, vehicle: int, at: int, key: str = "", **changes: Any
    ) -> Alert | None:
        slot = (kind, vehicle, key)
        alert = self._open.get(slot)
        if alert is None:
            return None
        self._open[slot] = alert = alert.update(at, **changes)
        return alert

    def clear(
        self,
        kind: str,
        vehicle: int,
        at: int,
        key: str = "",
        evidence: Mapping[str, Any] | None = None,
    ) -> Alert | None:
        """Clear, folding `evidence` (e.g. the peak and duration) into the cleared value."""
        alert = self._open.pop((kind, vehicle, key), None)
        if alert is None:
            return None
        if key:
            keys = self._keys.get((kind, vehicle))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[(kind, vehicle)]
        if evidence:
            alert = alert.update(at, evidence={**alert.evidence, **evidence})
        return alert.clear(at)

    def acknowledge(
        self, alert_id: str, by: str, at: int
    ) -> tuple[tuple[str, int, str], Alert] | None:
        for slot, alert in self._open.items():
            if alert.id == alert_id:
                self._open[slot] = acked = alert.acknowledge(by, at)
                return slot, acked
        return None

    def keys_open(self, kind: str, vehicle: int) -> list[str]:
        return sorted(self._keys.get((kind, vehicle), ()))

    def open_alerts(self) -> list[Alert]:
        return list(self._open.values())

    def __len__(self) -> int:
        return len(self._open)


class RuleContext:
    """Shared by the rule groups: settings, the per-model threshold table, each
    vehicle's model number, and the one alert book."""

    def __init__(self, settings: VehicleRulesSettings, vehicles: Interner) -> None:
        self.settings = settings
        self.vehicles = vehicles
        self.table = ThresholdTable(settings.models)
        self.book = AlertBook(vehicles)
        self._model = np.empty(0, np.intp)

    @property
    def n(self) -> int:
        return len(self._model)

    def ensure(self) -> int:
        """Give vehicles interned since the last call their model; returns the fleet size."""
        n = len(self.vehicles)
        if n > len(self._model):
            index = self.table.index
            default = index[self.settings.default_model]
            extra = [
                index.get(self.settings.vehicle_models.get(self.vehicles.name_of(v), ""), default)
                for v in range(len(self._model), n)
            ]
            self._model = np.concatenate([self._model, np.asarray(extra, np.intp)])
        return n

    def model(self, vehicle: NDArray[np.int32]) -> NDArray[np.intp]:
        """Model numbers of valid vehicle ids (callers mask out the invalid ones first)."""
        return self._model[vehicle]
