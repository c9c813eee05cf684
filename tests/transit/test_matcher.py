"""Trip matching on the CapMetro slice: real fixes, a loop trip, a trip past midnight."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.transit.avl import read_avl
from gateway.transit.feed import load_feed
from gateway.transit.matcher import TripMatcher

DATA = Path(__file__).resolve().parents[1] / "data" / "avl"
FEED = load_feed(DATA / "capmetro_gtfs_2016-12-16.zip")
FIXES = read_avl(DATA / "capmetro_2016-12-16.csv")


def _run(vehicle: str, trip_id: str, *, hint: bool) -> tuple[TripMatcher, list[float], list[int]]:
    matcher = TripMatcher(FEED)
    progress: list[float] = []
    for f in FIXES:
        if f.vehicle != vehicle or f.trip_id != trip_id:
            continue
        m = matcher.match(
            f.vehicle, f.ts_s, f.lat, f.lon, trip_id=f.trip_id if hint else "", route_id=f.route_id
        )
        assert m is not None and m.trip.trip_id == trip_id
        progress.append(m.progress_m)
    passed = [a.stop_index for a in matcher.arrivals]
    return matcher, progress, passed


@pytest.mark.parametrize("hint", [True, False])
def test_loop_trip_passes_its_stops_in_order(hint: bool) -> None:
    # 1671887 starts and ends at one stop and visits another twice
    matcher, progress, passed = _run("2305", "1671887", hint=hint)
    assert progress == sorted(progress)
    assert passed == sorted(passed) and len(set(passed)) == len(passed)
    trip = FEED.trips["1671887"]
    assert len(passed) > 0.8 * len(trip.stop_ids)
    assert passed[-1] == len(trip.stop_ids) - 1  # reached the end, not taken for the start
    times = [a.ts_s for a in matcher.arrivals]
    assert times == sorted(times)


def test_trip_past_midnight_is_on_the_previous_service_day() -> None:
    matcher = TripMatcher(FEED)
    f = next(f for f in FIXES if f.trip_id == "1676761")
    m = matcher.match(f.vehicle, f.ts_s, f.lat, f.lon, trip_id=f.trip_id)
    assert m is not None
    assert m.local_s > 24 * 3600  # 00:xx on the 16th is 24:xx of the 15th's service
    assert abs(m.deviation_s) < 900


def test_in_service_on_trip_and_after_layover() -> None:
    matcher, _, _ = _run("2305", "1671887", hint=True)
    m = matcher.last("2305")
    assert m is not None
    assert matcher.in_service("2305", m.ts_s)
    assert not matcher.in_service("2305", m.day_start_s + m.trip.end_s + 2 * 3600)
    assert not matcher.in_service("nobody", m.ts_s)


def test_a_fix_far_from_every_trip_matches_nothing() -> None:
    matcher = TripMatcher(FEED)
    ts = FIXES[0].ts_s
    assert matcher.match("x", ts, 0.0, 0.0, route_id="20") is None
    assert not matcher.in_service("x", ts)


def test_shape_feed_matches_by_route_and_schedule_along_the_shape() -> None:
    cairns = load_feed(DATA.parent / "gtfs" / "cairns_gtfs.zip")
    matcher = TripMatcher(cairns)
    trip = next(t for t in cairns.trips.values() if t.shape_id)
    path = matcher.paths.path(trip)
    assert path.line.length_m > path.length_m * 0.9  # the shape, not the stop legs
    day = next(
        d
        for d in (dt.date(2014, 1, 6) + dt.timedelta(days=k) for k in range(400))
        if trip.service_id in cairns.services_on(d)
    )
    midnight = cairns.service_midnight(day).timestamp()
    # a bus 60 s late, one fix a minute, placed on the shape by the timetable
    for second in range(trip.start_s, trip.end_s, 60):
        along = path.place_at(trip, second - 60)
        lat, lon = path.line.point_at(along)
        m = matcher.match("bus", midnight + second, float(lat), float(lon), route_id=trip.route_id)
        assert m is not None and m.trip.route_id == trip.route_id
        assert abs(m.progress_m - along) < 50
    passed = [a.stop_index for a in matcher.arrivals]
    assert passed == sorted(passed) and len(passed) > 0.8 * len(trip.stop_ids)


def test_layover_before_departure_and_deadhead_off_the_line() -> None:
    matcher = TripMatcher(FEED)
    trip = FEED.trips["1671887"]
    path = matcher.paths.path(trip)
    f = next(f for f in FIXES if f.trip_id == trip.trip_id)
    m0 = matcher.match("v", f.ts_s, f.lat, f.lon, trip_id=trip.trip_id)
    assert m0 is not None
    before = m0.day_start_s + trip.start_s - 300
    lat, lon = path.line.point_at(0.0)
    m = matcher.match("w", before, float(lat), float(lon), trip_id=trip.trip_id)
    assert m is not None and m.next_stop == 1 and m.deviation_s < 0 and not m.deadheading
    far = matcher.match("x", before, float(lat) + 0.05, float(lon), trip_id=trip.trip_id)
    assert far is not None and far.deadheading and far.progress_m == 0.0
    assert matcher.in_service("x", before)  # deadheading to its trip is in service
