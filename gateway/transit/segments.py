"""Learned stop-to-stop travel times: every traversal of a segment (a pair of
consecutive stops, whatever the route), kept with its time of day, and per route the
ratio of actual to scheduled running time.

A segment time runs from arrival at one stop to arrival at the next, so it includes
the dwell at the first. History days and the day so far feed the same store; a query
at time t sees only traversals that ended before t, so predictions stay causal.

    Arrival pairs --observe--> SegmentHistory --historical / last_bus / route_ratio--> Predictor
"""

from __future__ import annotations

import dataclasses
from collections import deque

SegmentKey = tuple[str, str]  # (from stop_id, to stop_id)


@dataclasses.dataclass(frozen=True, slots=True)
class Traversal:
    end_s: float  # epoch seconds of the arrival at the segment's end
    local_s: float  # the same, as seconds of the service day (time of day)
    duration_s: float
    scheduled_s: float


class SegmentHistory:
    def __init__(self, window_s: float = 3 * 3600.0, keep: int = 256) -> None:
        self.window_s = window_s  # time-of-day half-width of "the same time of day"
        self.keep = keep
        self._segments: dict[SegmentKey, deque[Traversal]] = {}
        self._routes: dict[str, deque[Traversal]] = {}
        self.observed = 0

    def observe(self, key: SegmentKey, route_id: str, t: Traversal) -> None:
        if t.duration_s < 0 or t.duration_s > 3.0 * t.scheduled_s + 600.0:
            return  # a vehicle held off its line or a bad match, not a travel time
        self._segments.setdefault(key, deque(maxlen=self.keep)).append(t)
        if t.scheduled_s > 0:
            self._routes.setdefault(route_id, deque(maxlen=4 * self.keep)).append(t)
        self.observed += 1

    def historical(self, key: SegmentKey, local_s: float, before_s: float) -> list[float]:
        """Durations at this time of day (any day) that ended before `before_s`."""
        got = self._segments.get(key)
        if not got:
            return []
        w = self.window_s
        return [t.duration_s for t in got if t.end_s < before_s and abs(t.local_s - local_s) <= w]

    def last_bus(self, key: SegmentKey, now_s: float, max_age_s: float) -> Traversal | None:
        """The most recent traversal that ended in the last `max_age_s`."""
        got = self._segments.get(key)
        if not got:
            return None
        i = _latest_before([t.end_s for t in got], now_s)
        if i < 0 or now_s - got[i].end_s > max_age_s:
            return None
        return got[i]

    def route_ratio(self, route_id: str, local_s: float, before_s: float) -> tuple[float, int]:
        """Actual over scheduled running time on the route near this time of day, and
        how many segments it rests on; (1.0, 0) when there are none."""
        got = self._routes.get(route_id)
        if not got:
            return 1.0, 0
        w = self.window_s
        near = [t for t in got if t.end_s < before_s and abs(t.local_s - local_s) <= w]
        sched = sum(t.scheduled_s for t in near)
        if sched <= 0:
            return 1.0, 0
        return sum(t.duration_s for t in near) / sched, len(near)


def _latest_before(ends: list[float], now_s: float) -> int:
    best, at = -1, float("-inf")
    for i, e in enumerate(ends):
        if at < e < now_s:
            best, at = i, e
    return best
