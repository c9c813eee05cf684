"""GTFS loading against the real Cairns feed (route 110 of it), plus the errors a bad feed
gives."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gateway.analytics.geo import haversine_m
from gateway.analytics.gtfs import GtfsError, load_gtfs, parse_gtfs_time

CAIRNS = Path(__file__).resolve().parents[1] / "data" / "gtfs" / "cairns_gtfs.zip"  # route 110


@pytest.fixture(scope="module")
def cairns() -> Path:
    if not CAIRNS.is_file():
        pytest.fail(f"{CAIRNS} is missing: it is committed, cut by scripts/slice_data.py")
    return CAIRNS


def test_parse_gtfs_time() -> None:
    assert parse_gtfs_time("05:50:00") == 21_000
    assert parse_gtfs_time("25:10:00") == 90_600
    for bad in ("5:61:00", "aa:00:00", "05:00"):
        with pytest.raises(ValueError):
            parse_gtfs_time(bad)


def test_load_cairns(cairns: Path) -> None:
    feed = load_gtfs(cairns)
    assert len(feed.shapes) == 4  # route 110's, of the full feed's 54
    assert len(feed.trips) == 125  # of 1,339
    shape = feed.shape("1100023")
    # points come back in shape_pt_sequence order: consecutive points are close together
    steps = haversine_m(shape.lat[:-1], shape.lon[:-1], shape.lat[1:], shape.lon[1:])
    assert float(np.max(steps)) < 2_000
    assert 30_000 < shape.polyline().length_m < 35_000
    trip = feed.trips["CNS2014-CNS_MUL-Weekday-00-4165878"]
    assert trip.shape_id == "1100023" and trip.start_s == 5 * 3600 + 50 * 60
    assert trip.end_s > trip.start_s
    with pytest.raises(KeyError, match="not in the feed"):
        feed.shape("nope")


def test_services_and_headways(cairns: Path) -> None:
    feed = load_gtfs(cairns)
    monday = dt.date(2014, 6, 2)
    assert feed.services_on(monday) == {"CNS2014-CNS_MUL-Weekday-00"}
    # a public holiday (Queen's Birthday): weekday service removed, Sunday service added
    assert feed.services_on(dt.date(2014, 6, 9)) == {"CNS2014-CNS_MUL-Sunday-00"}
    assert "CNS2014-CNS_MUL-Saturday-00" in feed.services_on(dt.date(2014, 6, 7))
    # route 110 towards the city runs every 30 minutes on weekday mornings
    weekday = feed.services_on(monday)
    assert feed.scheduled_headway_s("1100023", 8 * 3600, weekday) == 1800.0
    assert np.isnan(feed.scheduled_headway_s("1100023", 2 * 3600, weekday, window_s=600))
    speed = feed.scheduled_speed_mps("1100023")
    assert 5.0 < speed < 15.0  # a city bus averages 18 to 54 km/h end to end


def test_shapes_only_skips_stop_times(cairns: Path) -> None:
    feed = load_gtfs(cairns, stop_times=False)
    assert len(feed.shapes) == 4
    assert all(t.start_s == -1 for t in feed.trips.values())


def test_bad_feeds(tmp_path: Path) -> None:
    with pytest.raises(GtfsError, match="cannot open"):
        load_gtfs(tmp_path / "missing.zip")
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("shapes.txt", "shape_id,shape_pt_lat\n1,2\n")
    with pytest.raises(GtfsError, match="lacks column"):
        load_gtfs(bad)
    worse = tmp_path / "worse.zip"
    with zipfile.ZipFile(worse, "w") as zf:
        zf.writestr(
            "shapes.txt",
            "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n1,-16.9,145.7,1\n1,north,145.7,2\n",
        )
    with pytest.raises(GtfsError, match=r"shapes\.txt line 3"):
        load_gtfs(worse)
    no_trips = tmp_path / "no_trips.zip"
    with zipfile.ZipFile(no_trips, "w") as zf:
        zf.writestr("shapes.txt", "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n")
        zf.writestr("stop_times.txt", "trip_id,arrival_time,departure_time,stop_sequence\n")
    with pytest.raises(GtfsError, match=r"trips\.txt is missing"):
        load_gtfs(no_trips)
