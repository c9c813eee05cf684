"""Trip matching: which trip each fix belongs to, how far along it the vehicle is, and
which stops it passed since its last fix.

- A unit that sends a trip id is on that trip; one that sends a route is matched among
  that route's trips; one that sends neither, among every trip running.
- The service day is the one, of the local date and the day before, whose timetable
  puts the trip nearest the fix's time, so a trip at 25:10 matches after midnight.
- Progress only moves forward and is searched near where the vehicle was, so loops
  and stops visited twice are passed in order. Before the first stop's departure the
  vehicle is on layover; far from the line it is deadheading (on a trip, no progress).
- A vehicle is in service while on a trip, and for a layover after it ends.

    fix (vehicle, ts, lat, lon, trip?, route?) --TripMatcher.match--> Match | None
                                                     └─ .arrivals: stops passed, with times
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from gateway.transit.feed import TransitFeed, TripSchedule
from gateway.transit.path import PathBook, TripPath

ON_LINE_M = 300.0  # a fix within this of the trip's line is on it
MAX_SPEED_MPS = 30.0  # how far ahead of its last place a vehicle is searched for
BACK_SLACK_M = 100.0  # GPS noise behind the last place
AT_STOP_M = 25.0  # a stop is reached within this of it
WINDOW_S = 1800.0  # a trip is a candidate this long before its start and after its end


@dataclasses.dataclass(frozen=True, slots=True)
class Match:
    vehicle: str
    ts_s: float  # epoch seconds of the fix
    trip: TripSchedule
    path: TripPath
    day_start_s: float  # epoch seconds of the service day's time zero
    progress_m: float  # along the trip's line
    next_stop: int  # index of the first stop not yet reached; len(stops) when done
    off_line_m: float

    @property
    def local_s(self) -> float:
        """The fix's time as seconds of the trip's service day."""
        return self.ts_s - self.day_start_s

    @property
    def deadheading(self) -> bool:
        return self.off_line_m > ON_LINE_M

    @property
    def finished(self) -> bool:
        return self.next_stop >= len(self.trip.stop_ids)

    @property
    def current_stop(self) -> int:
        """Index of the stop the vehicle is at, or -1 between stops."""
        i = self.next_stop - 1
        if i >= 0 and self.progress_m - self.path.stop_m[i] <= AT_STOP_M:
            return i
        return -1

    @property
    def deviation_s(self) -> float:
        """Seconds late (positive) or early against the timetable at this place."""
        return self.local_s - self.path.scheduled_s(self.trip, self.progress_m)


@dataclasses.dataclass(frozen=True, slots=True)
class Arrival:
    """A vehicle passing a stop of its trip, its time interpolated between two fixes."""

    vehicle: str
    trip: TripSchedule
    stop_index: int
    ts_s: float
    day_start_s: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Fix:
    vehicle: str
    ts_s: float
    lat: float
    lon: float


def _make(
    fix: _Fix, trip: TripSchedule, path: TripPath, day_start: float, *, along: float, off: float
) -> Match:
    nxt = int(((path.stop_m - AT_STOP_M) <= along).sum())
    return Match(fix.vehicle, fix.ts_s, trip, path, day_start, along, nxt, off)


class TripMatcher:
    def __init__(self, feed: TransitFeed, layover_s: float = 1800.0) -> None:
        self.feed = feed
        self.paths = PathBook(feed)
        self.layover_s = layover_s
        self._last: dict[str, Match] = {}
        self._by_route: dict[str, list[TripSchedule]] = {}
        for trip in feed.trips.values():
            self._by_route.setdefault(trip.route_id, []).append(trip)
        self._services: dict[dt.date, tuple[float, set[str]]] = {}
        self.arrivals: list[Arrival] = []  # appended by match; the caller drains it

    def in_service(self, vehicle: str, ts_s: float) -> bool:
        """On a trip at its last fix, or on layover after one ended less than
        `layover_s` ago."""
        last = self._last.get(vehicle)
        if last is None:
            return False
        if not last.finished:
            return ts_s - last.ts_s <= self.layover_s
        return ts_s - last.day_start_s - last.trip.end_s <= self.layover_s

    def last(self, vehicle: str) -> Match | None:
        return self._last.get(vehicle)

    def match(
        self,
        vehicle: str,
        ts_s: float,
        lat: float,
        lon: float,
        *,
        trip_id: str = "",
        route_id: str = "",
    ) -> Match | None:
        prev = self._last.get(vehicle)
        trip = self.feed.trips.get(trip_id) if trip_id else None
        fix = _Fix(vehicle, ts_s, lat, lon)
        found: Match | None
        if trip is not None:
            found = self._on_trip(fix, trip, prev)
        else:
            found = self._search(fix, route_id, prev)
        if found is None:
            self._last.pop(vehicle, None)
            return None
        if prev is not None and prev.trip is found.trip and prev.day_start_s == found.day_start_s:
            self._passed(prev, found)
        self._last[vehicle] = found
        return found

    def _service_days(self, ts_s: float) -> list[tuple[float, set[str]]]:
        local = dt.datetime.fromtimestamp(ts_s, self.feed.timezone).date()
        out = []
        for day in (local, local - dt.timedelta(days=1)):
            got = self._services.get(day)
            if got is None:
                got = (self.feed.service_midnight(day).timestamp(), self.feed.services_on(day))
                self._services[day] = got
            out.append(got)
        return out

    def _day_start(self, ts_s: float, trip: TripSchedule) -> float | None:
        """The service day that puts the trip nearest `ts_s`, or None if it runs on neither."""
        best: tuple[float, float] | None = None
        for start, services in self._service_days(ts_s):
            if trip.service_id not in services:
                continue
            local = ts_s - start
            gap = max(trip.start_s - local, local - trip.end_s, 0.0)
            if best is None or gap < best[0]:
                best = (gap, start)
        return None if best is None else best[1]

    def _on_trip(self, fix: _Fix, trip: TripSchedule, prev: Match | None) -> Match:
        ts_s = fix.ts_s
        path = self.paths.path(trip)
        if prev is not None and prev.trip is trip:
            day_start = prev.day_start_s
            reach = BACK_SLACK_M + MAX_SPEED_MPS * max(ts_s - prev.ts_s, 0.0)
            lo, hi, near = prev.progress_m - BACK_SLACK_M, prev.progress_m + reach, prev.progress_m
        else:
            found = self._day_start(ts_s, trip)
            # a trip the calendar does not run today still counts when the unit says so
            day_start = found if found is not None else self._service_days(ts_s)[0][0]
            lo, hi, near = 0.0, path.length_m, path.place_at(trip, ts_s - day_start)
        off, along = path.locate(fix.lat, fix.lon, lo, hi, near)
        if prev is not None and prev.trip is trip:
            along = max(along, prev.progress_m)
            if off > ON_LINE_M:
                along = prev.progress_m
        elif off > ON_LINE_M:
            along = 0.0
        return _make(fix, trip, path, day_start, along=along, off=off)

    def _search(self, fix: _Fix, route_id: str, prev: Match | None) -> Match | None:
        ts_s = fix.ts_s
        if (
            prev is not None
            and not prev.finished
            and (not route_id or prev.trip.route_id == route_id)
        ):
            kept = self._on_trip(fix, prev.trip, prev)
            if not kept.deadheading:
                return kept
        trips = self._by_route.get(route_id, []) if route_id else self.feed.trips.values()
        best: tuple[float, Match] | None = None
        for trip in trips:
            if prev is not None and prev.finished and trip is prev.trip:
                continue
            day_start = self._day_start(ts_s, trip)
            if day_start is None:
                continue
            local = ts_s - day_start
            if not trip.start_s - WINDOW_S <= local <= trip.end_s + WINDOW_S:
                continue
            path = self.paths.path(trip)
            near = path.place_at(trip, local)
            off, along = path.locate(fix.lat, fix.lon, 0.0, path.length_m, near)
            if off > ON_LINE_M:
                continue
            late = local - path.scheduled_s(trip, along)
            score = off / 100.0 + abs(late) / 300.0
            if best is None or score < best[0]:
                best = (score, _make(fix, trip, path, day_start, along=along, off=off))
        if best is None and prev is not None:
            # no next trip yet: a vehicle at the end of its last one is on layover there
            kept = self._on_trip(fix, prev.trip, prev)
            return None if kept.deadheading else kept
        return None if best is None else best[1]

    def _passed(self, prev: Match, cur: Match) -> None:
        """Stops between the two fixes' places, at times interpolated between them."""
        if cur.next_stop <= prev.next_stop:
            return
        span = cur.progress_m - prev.progress_m
        dt_s = cur.ts_s - prev.ts_s
        for i in range(prev.next_stop, cur.next_stop):
            frac = (float(cur.path.stop_m[i]) - prev.progress_m) / span if span > 0 else 1.0
            frac = min(max(frac, 0.0), 1.0)
            self.arrivals.append(
                Arrival(cur.vehicle, cur.trip, i, prev.ts_s + frac * dt_s, cur.day_start_s)
            )
