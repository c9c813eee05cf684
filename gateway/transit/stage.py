"""The arrival prediction stage: trip matching, then predictions, fed by the fixes the
gateway decodes. `gateway eta replay` drives this same class over a CSV.

- `assign(vehicle, trip_id, route_id)` records what the unit says it runs (AIS-140
  and CAD messages, the replay's columns); fixes of a vehicle with no assignment are
  matched on position and timetable alone.
- `process(bundle)` matches each fix in time order, learns from the stops passed,
  and predicts the stops ahead; `drain()` hands over the predictions and observed
  arrivals made since the last call. The bundle passes on unchanged.
- `in_service(vehicle, ts_s)` is what the stale and offline rules ask: on a trip, or
  on layover after one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from gateway.batch import NS_PER_S
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.parts import Wiring
from gateway.streams import Interner
from gateway.transit.feed import FeedError, TransitFeed, load_feed
from gateway.transit.matcher import Arrival, Match, TripMatcher
from gateway.transit.predictor import Method, Prediction, Predictor, PredictorSettings
from gateway.transit.segments import SegmentHistory, Traversal

_PACE_PRIOR_S = 300.0  # seconds of "as expected" running the vehicle's pace starts from


@dataclasses.dataclass(frozen=True, slots=True)
class EtaSettings:
    gtfs: str = ""  # the static GTFS zip
    methods: tuple[str, ...] = (Method.KALMAN.value,)  # the first is the one published
    layover_s: float = 1800.0  # in service this long after a trip ends
    predictor: PredictorSettings = dataclasses.field(default_factory=PredictorSettings)


@dataclasses.dataclass(slots=True)
class _Run:
    """A vehicle's progress on its current trip: last stop passed and its pace."""

    trip_id: str
    day_start_s: float
    last_index: int = -1
    last_ts_s: float = 0.0
    actual_s: float = 0.0
    expected_s: float = 0.0

    @property
    def pace(self) -> float:
        return (self.actual_s + _PACE_PRIOR_S) / (self.expected_s + _PACE_PRIOR_S)


class EtaStage:
    def __init__(self, feed: TransitFeed, settings: EtaSettings, vehicles: Interner) -> None:
        try:
            self.methods = tuple(Method(m) for m in settings.methods)
        except ValueError:
            known = ", ".join(m.value for m in Method)
            raise ConfigError(
                "[eta]", "methods", f"{settings.methods!r}: each must be one of {known}"
            ) from None
        if not self.methods:
            raise ConfigError("[eta]", "methods", "is empty: name kalman, deviation or schedule")
        self.feed = feed
        self.vehicles = vehicles
        self.matcher = TripMatcher(feed, settings.layover_s)
        self.history = SegmentHistory()
        self.predictor = Predictor(self.history, settings.predictor)
        self._assigned: dict[str, tuple[str, str]] = {}
        self._runs: dict[str, _Run] = {}
        self._predictions: list[Prediction] = []
        self._arrivals: list[Arrival] = []

    @classmethod
    def create(cls, wiring: Wiring, settings: EtaSettings) -> EtaStage:
        if not settings.gtfs:
            raise ConfigError("[eta]", "gtfs", "is not set: give the path of the static GTFS zip")
        try:
            feed = load_feed(Path(settings.gtfs))
        except FeedError as err:
            raise ConfigError("[eta]", "gtfs", str(err)) from None
        return cls(feed, settings, wiring.registry.vehicles)

    def assign(self, vehicle: str, trip_id: str = "", route_id: str = "") -> None:
        self._assigned[vehicle] = (trip_id, route_id)

    def in_service(self, vehicle: str, ts_s: float) -> bool:
        return self.matcher.in_service(vehicle, ts_s)

    def process(self, bundle: Bundle) -> Bundle:
        fixes = bundle.fixes.sorted_by_time()
        names = self.vehicles.names_of(fixes.vehicle)
        for name, ts, lat, lon in zip(names, fixes.ts, fixes.lat, fixes.lon, strict=True):
            self.step(str(name), int(ts) / NS_PER_S, float(lat), float(lon))
        return bundle

    def step(self, vehicle: str, ts_s: float, lat: float, lon: float) -> Match | None:
        trip_id, route_id = self._assigned.get(vehicle, ("", ""))
        m = self.matcher.match(vehicle, ts_s, lat, lon, trip_id=trip_id, route_id=route_id)
        self._learn(self.matcher.arrivals)
        self.matcher.arrivals.clear()
        if m is None:
            return None
        run = self._runs.get(vehicle)
        pace = run.pace if run is not None and run.trip_id == m.trip.trip_id else 1.0
        for method in self.methods:
            self._predictions.extend(self.predictor.predict(m, method, pace))
        return m

    def learn_history(self, fixes: Iterable[tuple[str, float, float, float, str, str]]) -> None:
        """Learn segment times from past days' fixes (vehicle, ts_s, lat, lon, trip,
        route), in time order; they make no predictions."""
        matcher = TripMatcher(self.feed)
        runs: dict[str, _Run] = {}
        for vehicle, ts_s, lat, lon, trip_id, route_id in fixes:
            matcher.match(vehicle, ts_s, lat, lon, trip_id=trip_id, route_id=route_id)
            self._observe(matcher.arrivals, runs)
            matcher.arrivals.clear()

    def drain(self) -> tuple[list[Prediction], list[Arrival]]:
        out = self._predictions, self._arrivals
        self._predictions, self._arrivals = [], []
        return out

    def _learn(self, arrivals: list[Arrival]) -> None:
        self._arrivals.extend(arrivals)
        self._observe(arrivals, self._runs)

    def _observe(self, arrivals: list[Arrival], runs: dict[str, _Run]) -> None:
        for a in arrivals:
            run = runs.get(a.vehicle)
            if run is None or run.trip_id != a.trip.trip_id or run.day_start_s != a.day_start_s:
                run = _Run(a.trip.trip_id, a.day_start_s)
                runs[a.vehicle] = run
            i = a.stop_index
            if run.last_index == i - 1 and i > 0:
                trip = a.trip
                scheduled = float(trip.arrival_s[i] - trip.arrival_s[i - 1])
                duration = a.ts_s - run.last_ts_s
                key = (trip.stop_ids[i - 1], trip.stop_ids[i])
                expected = self.predictor.segment(trip, i, a.ts_s)[0]
                run.actual_s += duration
                run.expected_s += expected
                traversal = Traversal(a.ts_s, a.ts_s - a.day_start_s, duration, scheduled)
                self.history.observe(key, trip.route_id, traversal)
            run.last_index, run.last_ts_s = i, a.ts_s
