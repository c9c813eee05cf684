"""Trip matching on the CapMetro slice: real fixes, a loop trip, a trip past midnight."""

from __future__ import annotations

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
