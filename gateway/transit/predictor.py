"""Arrival predictions for the stops a matched vehicle has not reached yet.

Three methods, each giving every prediction an uncertainty (one standard deviation):

- `schedule`: the timetable.
- `deviation`: OneBusAway's propagation, the timetable plus the vehicle's current
  lateness at every stop downstream.
- `kalman` (ours): stop-to-stop times learned by time of day (history days and the day
  so far), blended with the last bus on each segment through TheTransitClock's Kalman
  filter; where a segment has no history, its scheduled time scaled by the route's
  learned actual/scheduled ratio. Beyond TheTransitClock, the vehicle's own pace on
  its trip so far carries into the next segments, fading with distance, and far
  ahead the estimate leans on the deviation one (up to 60% at 20 min), whose
  timetable carries the time-of-day effects a day's few traversals cannot yet.

All methods share the layover rule: a vehicle at its first stop before departure
leaves on time. No prediction is earlier than the fix it is made at.
"""

from __future__ import annotations

import dataclasses
import enum
import math

from gateway.transit.feed import TripSchedule
from gateway.transit.kalman import historical_moments, kalman_step
from gateway.transit.matcher import Match
from gateway.transit.segments import SegmentHistory


class Method(enum.StrEnum):
    SCHEDULE = "schedule"
    DEVIATION = "deviation"
    KALMAN = "kalman"


@dataclasses.dataclass(frozen=True, slots=True)
class Prediction:
    vehicle: str
    trip_id: str
    stop_index: int
    stop_sequence: int
    stop_id: str
    made_at_s: float  # epoch seconds of the fix it was made at
    arrival_s: float  # predicted arrival, epoch seconds
    uncertainty_s: float  # one standard deviation
    method: Method


@dataclasses.dataclass(frozen=True, slots=True)
class PredictorSettings:
    horizon_s: float = 1800.0  # predict stops up to this far ahead
    last_bus_age_s: float = 2700.0  # an older previous bus is not "the last bus"
    initial_error: float = 900.0  # s², the filter error the chain of segments starts with
    min_history: int = 5  # traversals needed to trust a segment's own history
    pace_fade_m: float = 2500.0  # how far the vehicle's own pace carries downstream
    pace_weight: float = 0.25  # how much of the vehicle's pace is taken at distance 0
    hold_early_s: float = -1.0  # never earlier than this before the timetable; < 0: off
    deviation_weight: float = 0.6  # share of OneBusAway's estimate in ours, far ahead
    deviation_ramp_s: float = 1200.0  # ... reached this far ahead, rising from 0 at now


class Predictor:
    def __init__(self, history: SegmentHistory, settings: PredictorSettings) -> None:
        self.history = history
        self.settings = settings

    def predict(self, m: Match, method: Method, pace: float = 1.0) -> list[Prediction]:
        """`pace`: the vehicle's own actual/expected running time on its trip so far."""
        if m.finished or m.deadheading:
            return []
        if method is Method.KALMAN:
            times = self._kalman(m, pace)
        else:
            times = self._timetable(m, method is Method.DEVIATION)
        trip, out = m.trip, []
        for i, (arrival, sigma) in times:
            out.append(
                Prediction(
                    m.vehicle,
                    trip.trip_id,
                    i,
                    int(trip.sequence[i]),
                    trip.stop_ids[i],
                    m.ts_s,
                    arrival,
                    sigma,
                    method,
                )
            )
        return out

    def _layover(self, m: Match) -> bool:
        return m.next_stop <= 1 and m.local_s < m.trip.departure_s[0]

    def _timetable(self, m: Match, deviate: bool) -> list[tuple[int, tuple[float, float]]]:
        trip, now = m.trip, m.ts_s
        late = m.deviation_s if deviate and not self._layover(m) else 0.0
        out: list[tuple[int, tuple[float, float]]] = []
        for i in range(m.next_stop, len(trip.stop_ids)):
            at = max(m.day_start_s + float(trip.arrival_s[i]) + late, now)
            if at - now > self.settings.horizon_s:
                break
            out.append((i, (at, 60.0 + 0.2 * (at - now))))
        return out

    def segment(self, trip: TripSchedule, i: int, before_s: float) -> tuple[float, float]:
        """Learned mean duration of segment i-1 -> i at its time of day, and its variance,
        from traversals that ended before `before_s`; without the last bus or the
        vehicle's pace, so also what a vehicle's pace is measured against."""
        key = (trip.stop_ids[i - 1], trip.stop_ids[i])
        sched = float(trip.arrival_s[i] - trip.arrival_s[i - 1])
        local = float(trip.arrival_s[i])
        durations = self.history.historical(key, local, before_s)
        if len(durations) >= self.settings.min_history:
            mean, var = historical_moments(durations)
        else:
            ratio, n = self.history.route_ratio(trip.route_id, local, before_s)
            mean = sched * (ratio if n >= 5 else 1.0)
            var = (0.3 * sched) ** 2 + 100.0
        return mean, var

    def _kalman(self, m: Match, pace: float) -> list[tuple[int, tuple[float, float]]]:
        trip, now, s = m.trip, m.ts_s, self.settings
        stop_m = m.path.stop_m
        t = now
        start = m.next_stop
        if start == 0 or self._layover(m):
            t = max(now, m.day_start_s + float(trip.departure_s[0]))
            start = max(start, 1)
        error = s.initial_error
        total_var = 0.0
        late = 0.0 if self._layover(m) else m.deviation_s
        out: list[tuple[int, tuple[float, float]]] = []
        if m.next_stop == 0:
            out.append((0, (t, 60.0)))
        for i in range(start, len(trip.stop_ids)):
            key = (trip.stop_ids[i - 1], trip.stop_ids[i])
            mean, var = self.segment(trip, i, now)
            last = self.history.last_bus(key, now, s.last_bus_age_s)
            if last is not None:
                step = kalman_step(last.duration_s, mean, var, error)
                duration, error = step.prediction_s, step.error
            else:
                duration, error = mean, var
            ahead_m = max(float(stop_m[i - 1]) - m.progress_m, 0.0)
            weight = s.pace_weight * math.exp(-ahead_m / s.pace_fade_m)
            duration *= 1.0 + weight * (pace - 1.0)
            if i == m.next_stop and i > 0:
                leg = float(stop_m[i] - stop_m[i - 1])
                left = float(stop_m[i]) - m.progress_m
                duration *= min(max(left / leg, 0.0), 1.0) if leg > 0 else 0.0
            t += max(duration, 0.0)
            if s.hold_early_s >= 0:
                t = max(t, m.day_start_s + float(trip.departure_s[i]) - s.hold_early_s)
            total_var += error
            oba = max(m.day_start_s + float(trip.arrival_s[i]) + late, now)
            w = s.deviation_weight * min((t - now) / s.deviation_ramp_s, 1.0)
            at = (1.0 - w) * t + w * oba
            if at - now > s.horizon_s:
                break
            out.append((i, (at, math.sqrt(total_var + 900.0))))
        return out
