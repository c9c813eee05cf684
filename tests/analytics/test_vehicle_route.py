"""Route rules on the real Cairns GTFS: deviation from a shape, reassignment, and
bunching / gapping of three synthetic buses along one shape."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from gateway.analytics.gtfs import GtfsFeed, load_gtfs
from gateway.analytics.vehicle_settings import VehicleRulesSettings
from tests.analytics.vehicle_harness import NS, Harness, at, states

CAIRNS = Path(__file__).resolve().parents[1] / "data" / "gtfs" / "cairns_gtfs.zip"  # route 110
SHAPE = "1100023"  # route 110, Palm Cove to the Cairns city terminus, 32.6 km
NAN = float("nan")


@pytest.fixture(scope="module")
def feed() -> GtfsFeed:
    if not CAIRNS.is_file():
        pytest.fail(f"{CAIRNS} is missing: it is committed, cut by scripts/slice_data.py")
    return load_gtfs(CAIRNS)


def place(feed: GtfsFeed, along: float, offset: float = 0.0) -> tuple[float, float]:
    """The point `along` metres down the shape, moved `offset` metres to its left."""
    line = feed.shape(SHAPE).polyline()
    x = np.interp([along - 5, along, along + 5], line.cum, line.x)
    y = np.interp([along - 5, along, along + 5], line.cum, line.y)
    tx, ty = x[2] - x[0], y[2] - y[0]
    norm = float(np.hypot(tx, ty))
    lat, lon = line.projection.to_latlon(x[1] - ty / norm * offset, y[1] + tx / norm * offset)
    return float(lat), float(lon)


def off_by(feed: GtfsFeed, lat: float, lon: float) -> float:
    dist, _ = feed.shape(SHAPE).polyline().locate([lat], [lon])
    return float(dist[0])


def test_route_deviation_on_a_real_shape(feed: GtfsFeed) -> None:
    h = Harness(VehicleRulesSettings(assignments={"b1": SHAPE}, utc_offset_minutes=600), feed)

    def fix(t: int, offset: float) -> tuple[str, float, float, float, float]:
        return ("b1", t, *place(feed, 24_000.0 + 10.0 * t, offset), NAN)

    # on the route, then two fixes 250 m off, then back: too short
    h.fixes([fix(t, 0.0) for t in (0, 20, 40)])
    h.fixes([fix(t, 250.0) for t in (60, 80)])
    assert 245 < off_by(feed, *place(feed, 24_600.0, 250.0)) < 255
    h.fixes([fix(100, 0.0)])
    assert h.of("route_deviation") == []
    # three fixes off: opens on the third, once
    h.fixes([fix(t, 250.0) for t in (120, 140, 160, 180)])
    got = h.of("route_deviation")
    assert len(got) == 1 and got[0].opened_at == at(160) and got[0].started_at == at(120)
    assert got[0].evidence["shape_id"] == SHAPE and got[0].evidence["threshold_m"] == 150.0
    assert 200 < got[0].evidence["distance_m"] < 300
    # 120 m off is inside the hysteresis band: it stays open
    h.fixes([fix(t, 120.0) for t in (200, 220, 240)])
    assert states(h.of("route_deviation")) == ["opened"]
    # back on the route for three fixes: clears on the third
    h.fixes([fix(t, 0.0) for t in (260, 280, 300)])
    got = h.of("route_deviation")
    assert states(got) == ["opened", "cleared"] and got[1].cleared_at == at(300)
    assert h.of("gps_jump") == []


def test_assignment_api(feed: GtfsFeed) -> None:
    h = Harness(VehicleRulesSettings(utc_offset_minutes=600), feed)
    with pytest.raises(KeyError, match="not in the GTFS feed"):
        h.rules.set_assignment("b1", "no-such-shape")
    # unassigned: far from any route, nothing is judged
    h.fixes([("b1", t, *place(feed, 1000.0, 2000.0), 0.0) for t in (0, 20, 40, 60)])
    assert h.alerts == []
    h.rules.set_assignment("b1", SHAPE)
    h.fixes([("b1", t, *place(feed, 1000.0, 2000.0), 0.0) for t in (80, 100, 120)])
    assert states(h.of("route_deviation")) == ["opened"]
    # taken off the route: the deviation clears at the next batch, saying why
    h.rules.set_assignment("b1", None)
    h.fixes([("b1", 140, *place(feed, 1000.0, 2000.0), 0.0)])
    got = h.of("route_deviation")
    assert states(got) == ["opened", "cleared"]
    assert got[1].evidence["cleared_because"] == "reassigned"


def test_unknown_assignment_in_config_fails_at_start(feed: GtfsFeed) -> None:
    with pytest.raises(ValueError, match="not in the GTFS feed"):
        Harness(VehicleRulesSettings(assignments={"b1": "nope"}), feed)
    with pytest.raises(ValueError, match="set gtfs_path"):
        Harness(VehicleRulesSettings(assignments={"b1": SHAPE}))


def test_bunching_and_gapping_of_three_buses(feed: GtfsFeed) -> None:
    settings = VehicleRulesSettings(
        assignments={"A": SHAPE, "B": SHAPE, "C": SHAPE},
        scheduled_headways_s={SHAPE: 600.0},
        route_speeds_mps={SHAPE: 5.0},
        utc_offset_minutes=600,
    )
    h = Harness(settings, feed)
    start = {"A": 6000.0, "B": 5900.0, "C": 500.0}
    # B runs 100 m (20 s) behind A: bunched. C runs 5.4 km (1,080 s) behind B: a gap.
    for t in range(0, 130, 10):
        h.fixes([(bus, t, *place(feed, a0 + 5.0 * t), 5.0) for bus, a0 in start.items()])
    bunching, gapping = h.of("bunching"), h.of("gapping")
    assert [(a.asset, a.opened_at) for a in bunching] == [("bus/B", at(60))]
    assert bunching[0].evidence["vehicle_ahead"] == "A"
    assert bunching[0].evidence["headway_s"] == pytest.approx(20.0, abs=0.5)
    assert bunching[0].evidence["scheduled_headway_s"] == 600.0
    assert [(a.asset, a.opened_at) for a in gapping] == [("bus/C", at(60))]
    assert gapping[0].evidence["ratio"] == pytest.approx(1.8, abs=0.01)
    # B waits at a stop while A drives on and C catches up: both clear, once each
    pos = {bus: a0 + 5.0 * 120 for bus, a0 in start.items()}
    for t in range(130, 700, 10):
        pos["A"] += 50.0
        pos["C"] += 50.0
        h.fixes([(bus, t, *place(feed, a), 5.0 if bus != "B" else 0.0) for bus, a in pos.items()])
    assert states(h.of("bunching")) == ["opened", "cleared"]
    assert states(h.of("gapping")) == ["opened", "cleared"]
    assert h.of("route_deviation") == [] and h.of("gps_jump") == []


def test_scheduled_headway_from_gtfs(feed: GtfsFeed) -> None:
    h = Harness(VehicleRulesSettings(assignments={"b1": SHAPE}, utc_offset_minutes=600), feed)
    h.fixes([("b1", 0, *place(feed, 100.0), 0.0)])
    route = h.rules.route
    no = route.shape_ids.index(SHAPE)
    # Monday 2 June 2014, 08:00 in Cairns (UTC+10): route 110 runs every 30 minutes
    monday_8am = int(dt.datetime(2014, 6, 1, 22, 0, tzinfo=dt.UTC).timestamp()) * NS
    assert route.scheduled_headway_s(no, monday_8am) == 1800.0
    assert 5.0 < route.running_speed_mps(no) < 15.0
