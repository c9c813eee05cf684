"""Water meter semantics: from one device's decoded points to readings and events.

    decoded values (one per point) --MeterState.good(ts, values)--> ReadingBatch, events
    a failed poll                  --MeterState.failed(ts, quality)--> ReadingBatch of NaN

- Range: a value outside the point's [min, max] keeps its value and gets OUT_OF_RANGE.
- Totaliser: a backwards step across the rollover value is a wrap (event
  `rollover`); a large backwards jump is a meter replacement (event
  `replacement`, and the baseline restarts); a small one is reverse flow.
- Flow from totaliser deltas when the profile has no flow point: stream
  `<asset>/flow_lps`, flagged SUBSTITUTED, L/s from the totaliser's unit.
- Reverse flow: a negative flow, or a `reverse_flow` status bit, sets REVERSE_FLOW.
- Alarm bits (role "alarm": tamper, low_battery, empty_pipe, meter_leak) become
  events on each change: `<name>` when raised and `<name>_cleared` when cleared.
- A failed poll gives NaN with the failure's quality flags, never the last value.

    MeterState(asset: str, profile: Profile, registry: StreamRegistry)
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from gateway.batch import NS_PER_S, Quality, ReadingBatch
from gateway.drivers.modbus.profiles import Point, Profile
from gateway.events import Event
from gateway.streams import StreamRegistry

LITRES_PER = {"m3": 1000.0, "m³": 1000.0, "L": 1.0, "l": 1.0, "kL": 1000.0, "ML": 1e6}
REPLACEMENT_FRACTION = 0.01  # a backwards jump beyond 1% of the reading (and 1 unit) is a swap
# a backwards step is a wrap only if the volume it implies is a small part of the dial
ROLLOVER_FRACTION = 0.05
_OUT_OF_RANGE = int(Quality.OUT_OF_RANGE)
_REVERSE_FLOW = int(Quality.REVERSE_FLOW)


class MeterState:
    def __init__(self, asset: str, profile: Profile, registry: StreamRegistry) -> None:
        self.asset = asset
        self.profile = profile
        self.points: tuple[Point, ...] = tuple(
            p for p in profile.points if p.emit and p.type != "string"
        )
        self.ids = np.array(
            [registry.register(f"{asset}/{p.name}", p.unit, p.kind or p.role) for p in self.points],
            np.int32,
        )
        self.lo_list = [p.min for p in self.points]
        self.hi_list = [p.max for p in self.points]
        self.ranged = [
            i for i, p in enumerate(self.points) if math.isfinite(p.min) or math.isfinite(p.max)
        ]
        self.flow_idx = [i for i, p in enumerate(self.points) if p.role == "flow"]
        self.total_idx = next((i for i, p in enumerate(self.points) if p.role == "totaliser"), -1)
        self.reverse_idx = [i for i, p in enumerate(self.points) if p.role == "reverse_flow"]
        self.alarm_idx = [i for i, p in enumerate(self.points) if p.role == "alarm"]
        self.derived_id = -1
        if self.total_idx >= 0 and not self.flow_idx:
            self.derived_id = registry.register(f"{asset}/flow_lps", "L/s", "flow")
        self.ids_with_derived = np.append(self.ids, np.int32(max(self.derived_id, 0)))
        self._total: float | None = None
        self._total_ts = 0
        self._alarms: dict[str, bool] = {}

    @property
    def stream_ids(self) -> NDArray[np.int32]:
        return self.ids if self.derived_id < 0 else self.ids_with_derived

    def failed(self, ts: int, quality: int) -> ReadingBatch:
        ids = self.stream_ids
        n = len(ids)
        return ReadingBatch(
            np.full(n, ts, np.int64),
            ids,
            np.full(n, np.nan),
            np.full(n, quality, np.uint8),
        )

    def good(self, ts: int, values: list[float]) -> tuple[ReadingBatch, list[Event]]:
        """Readings and events from one good poll; `values` follow `self.points`.
        Plain Python over the handful of points a meter has: cheaper than numpy
        calls on arrays of six."""
        quality = [0] * len(values)
        for i in self.ranged:
            v = values[i]
            if v < self.lo_list[i] or v > self.hi_list[i]:
                quality[i] = _OUT_OF_RANGE
        events: list[Event] = []
        reverse = any(values[i] >= 0.5 for i in self.reverse_idx)
        for i in self.flow_idx:
            if reverse or values[i] < 0:
                quality[i] |= _REVERSE_FLOW
        for i in self.alarm_idx:
            self._alarm(ts, self.points[i].name, values[i] >= 0.5, events)
        ids = self.ids
        if self.total_idx >= 0 and not quality[self.total_idx] & _OUT_OF_RANGE:
            flow, flow_q = self._totaliser(ts, values[self.total_idx], events)
            if self.derived_id >= 0 and not math.isnan(flow):
                if reverse:
                    flow_q |= _REVERSE_FLOW
                ids = self.ids_with_derived
                values = [*values, flow]
                quality.append(flow_q)
        n = len(ids)
        batch = ReadingBatch(
            np.full(n, ts, np.int64),
            ids,
            np.array(values, np.float64),
            np.array(quality, np.uint8),
        )
        return batch, events

    def _alarm(self, ts: int, name: str, raised: bool, events: list[Event]) -> None:
        before = self._alarms.get(name, False)
        if raised != before:
            kind = name if raised else f"{name}_cleared"
            events.append(
                Event(ts, self.asset, kind, f"{name} {'raised' if raised else 'cleared'}")
            )
        self._alarms[name] = raised

    def _totaliser(self, ts: int, total: float, events: list[Event]) -> tuple[float, int]:
        """Flow in L/s since the last good totaliser reading (NaN when none)."""
        point = self.points[self.total_idx]
        prev, prev_ts = self._total, self._total_ts
        self._total, self._total_ts = total, ts
        if prev is None or ts <= prev_ts:
            return math.nan, 0
        delta = total - prev
        quality = int(Quality.SUBSTITUTED)
        if delta < 0:
            wrap = point.rollover
            if wrap > 0 and 0 <= delta + wrap < ROLLOVER_FRACTION * wrap:
                delta += wrap
                events.append(
                    Event(
                        ts,
                        self.asset,
                        "rollover",
                        f"{point.name} wrapped at {wrap:g}",
                        {"before": prev, "after": total},
                    )
                )
            elif -delta > max(1.0, REPLACEMENT_FRACTION * abs(prev)):
                events.append(
                    Event(
                        ts,
                        self.asset,
                        "replacement",
                        f"{point.name} jumped back from {prev:g} to {total:g}: meter replaced?",
                        {"before": prev, "after": total},
                    )
                )
                return math.nan, 0
            else:
                quality |= Quality.REVERSE_FLOW
        litres = LITRES_PER.get(point.unit, 1.0)
        return delta * litres / ((ts - prev_ts) / NS_PER_S), quality
