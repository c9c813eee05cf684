"""Motion rules on hand-made fix sequences: overspeed, GPS jump, harsh braking and
acceleration, stale and offline."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.analytics.geo import LocalProjection
from gateway.analytics.vehicle_settings import SpeedZone, VehicleRulesSettings
from gateway.batch import FixQuality
from gateway.bundle import Bundle
from gateway.events import Severity
from tests.analytics.vehicle_harness import LAT0, LON0, Harness, at, states

KMH = 1 / 3.6
PROJ = LocalProjection(LAT0, LON0)


def east(metres: float) -> tuple[float, float]:
    lat, lon = PROJ.to_latlon(metres, 0.0)
    return float(lat), float(lon)


def test_overspeed_opens_after_hold_and_clears_with_hysteresis() -> None:
    h = Harness()
    # 8 s over the limit, then back under: too short
    h.fixes([("b1", t, LAT0, LON0, 85 * KMH) for t in range(0, 9, 2)])
    h.fixes([("b1", 10, LAT0, LON0, 60 * KMH)])
    assert h.of("overspeed") == []
    # held from t=20: opens at t=30, exactly once
    h.fixes([("b1", t, LAT0, LON0, 88 * KMH) for t in range(20, 41, 2)])
    opened = h.of("overspeed")
    assert len(opened) == 1 and opened[0].opened_at == at(30)
    assert opened[0].started_at == at(20)
    ev = opened[0].evidence
    assert ev["limit_kmh"] == 80.0 and ev["held_s"] == 10.0 and ev["speed_kmh"] == 88.0
    # 78 km/h is under the limit but inside the 5 km/h band: stays open
    h.fixes([("b1", t, LAT0, LON0, 78 * KMH) for t in range(42, 60, 2)])
    assert states(h.of("overspeed")) == ["opened"]
    # 70 km/h from t=60, held 5 s: clears at t=64 (first sample at or past 5 s is t=66)
    h.fixes([("b1", t, LAT0, LON0, 70 * KMH) for t in range(60, 80, 2)])
    got = h.of("overspeed")
    assert states(got) == ["opened", "cleared"]
    assert got[1].cleared_at == at(66) and got[1].id == got[0].id
    assert got[1].evidence["peak_kmh"] == 88.0


def test_overspeed_zone_limit() -> None:
    zone = SpeedZone(
        "school",
        25.0,
        ((LAT0 - 0.01, LON0 - 0.01), (LAT0 - 0.01, LON0 + 0.01), (LAT0 + 0.01, LON0 + 0.01),
         (LAT0 + 0.01, LON0 - 0.01)),
    )  # fmt: skip
    h = Harness(VehicleRulesSettings(zones=(zone,)))
    h.fixes([("in", t, LAT0, LON0, 40 * KMH) for t in range(0, 21, 2)])
    h.fixes([("out", t, LAT0 + 0.05, LON0, 40 * KMH) for t in range(0, 21, 2)])
    got = h.of("overspeed")
    assert [a.asset for a in got] == ["bus/in"]
    assert got[0].evidence["zone"] == "school" and got[0].evidence["limit_kmh"] == 25.0


def test_gps_jump_flagged_and_does_not_poison_speed() -> None:
    h = Harness()
    # 10 m/s east, no reported speed: speed and acceleration come from positions
    track = [("b1", t, *east(10.0 * t), float("nan")) for t in range(0, 50, 5)]
    jumped = ("b1", 50, *east(5_000.0), float("nan"))  # 5 km in 5 s
    after = [("b1", t, *east(10.0 * t), float("nan")) for t in range(55, 80, 5)]
    h.fixes([*track, jumped, *after])
    got = h.of("gps_jump")
    assert states(got) == ["opened", "cleared"]
    assert got[0].opened_at == at(50) and got[1].cleared_at == at(55)
    assert got[0].evidence["implied_kmh"] > 120 and got[0].evidence["threshold_kmh"] == 120
    assert got[1].evidence["reanchored"] is False
    # the fix after the jump is measured from the last good fix: 10 m/s, nothing harsh
    assert h.of("harsh_braking") == [] and h.of("harsh_acceleration") == []
    assert h.of("overspeed") == []


def test_gps_jump_reanchors_after_consistent_jumps() -> None:
    h = Harness()
    h.fixes([("b1", t, *east(0.0), 0.0) for t in range(0, 20, 5)])
    # the unit wakes up 20 km away and stays there: after 3 agreeing fixes it is believed
    h.fixes([("b1", t, *east(20_000.0), 0.0) for t in range(20, 45, 5)])
    got = h.of("gps_jump")
    assert states(got) == ["opened", "cleared"]
    assert got[1].cleared_at == at(30) and got[1].evidence["reanchored"] is True


def test_harsh_braking_and_acceleration_from_fixes() -> None:
    h = Harness()
    speeds = [15, 15, 8, 7, 7, 10, 13, 13]  # m/s, one fix a second
    h.fixes([("b1", t, *east(10.0 * t), float(v)) for t, v in enumerate(speeds)])
    braking = h.of("harsh_braking")
    assert states(braking) == ["opened", "cleared"]
    assert braking[0].opened_at == at(2) and braking[0].evidence["accel_mps2"] == -7.0
    assert braking[0].evidence["threshold_mps2"] == 3.0
    accel = h.of("harsh_acceleration")
    assert states(accel) == ["opened", "cleared"]
    assert accel[0].opened_at == at(5) and accel[1].cleared_at == at(7)
    # a 2 m/s² change is ordinary driving
    h2 = Harness()
    h2.fixes([("b2", t, *east(10.0 * t), float(10 - 2 * t)) for t in range(4)])
    assert h2.alerts == []


def test_harsh_braking_from_can_speed() -> None:
    h = Harness()
    h.readings([("b1", "speed_kmh", t, v) for t, v in enumerate([50.0, 50.0, 30.0, 29.0])])
    got = h.of("harsh_braking")
    assert states(got) == ["opened", "cleared"]
    assert got[0].evidence["source"] == "can"


def test_stale_then_offline_then_back() -> None:
    h = Harness()
    h.fixes([("b1", t, *east(10.0 * t), 10.0) for t in range(0, 30, 10)])  # last fix t=20
    h.follow_data = False
    assert h.rules.tick(at(45)) == []  # 25 s: within 3 x 10 s
    stale = h.rules.tick(at(51))
    assert [(a.kind, a.state.value) for a in stale] == [("stale", "opened")]
    assert stale[0].started_at == at(20) and stale[0].evidence["threshold_s"] == 30.0
    assert h.rules.tick(at(60)) == [] and h.rules.tick(at(300)) == []
    offline = h.rules.tick(at(621))
    assert [(a.kind, a.severity) for a in offline] == [("offline", Severity.CRITICAL)]
    for t in (700, 1200, 5000):  # a vehicle never seen again: nothing more, ever
        assert h.rules.tick(at(t)) == []
    h.now = at(5001)
    back = h.fixes([("b1", 5000, *east(300.0), 10.0)])
    assert sorted((a.kind, a.state.value) for a in back) == [
        ("offline", "cleared"),
        ("stale", "cleared"),
    ]


def test_no_stale_outside_service_hours() -> None:
    h = Harness()
    h.fixes([("b1", 0, LAT0, LON0, 0.0)])
    h.follow_data = False
    # 02:00 IST the next night
    night = at(15.5 * 3600)
    assert h.rules.tick(night) == []


def test_bad_fixes_never_raise_and_never_alert() -> None:
    h = Harness()
    nan = float("nan")
    rows = [
        ("b1", 0, *east(0.0), nan),
        ("b1", 5, *east(50.0), nan),
        ("b1", 5, *east(9_000.0), nan),  # duplicate time, far away: skipped, not a jump
    ]
    assert h.fixes(rows) == []
    late = [
        ("b1", 2, *east(7_000.0), 200.0),  # older than what was judged: skipped
        ("b1", 10, nan, LON0, 10.0),  # no position
        ("b1", 11, 95.0, LON0, 10.0),  # latitude out of range
        ("b1", 15, *east(150.0), nan),
    ]
    assert h.fixes(late) == []
    # fixes with no GNSS lock are ignored, however far they wander
    nolock = h.fix_batch([("b1", 16, *east(50_000.0), 99.0)], fix=FixQuality.NONE)
    assert h.run(Bundle(fixes=nolock)) == []
    # a vehicle id outside the interner (a wiring bug upstream) is skipped
    batch = h.fix_batch([("b1", 20, *east(200.0), 10.0)])
    bogus = type(batch)(
        batch.ts, np.asarray([999], np.int32), batch.lat, batch.lon, batch.speed,
        batch.heading, batch.fix,
    )  # fmt: skip
    assert h.run(Bundle(fixes=bogus)) == []
    # fixes arriving in one batch out of order are judged in time order
    h2 = Harness()
    h2.fixes([("b2", t, *east(10.0 * t), 10.0) for t in (20, 0, 10, 15, 5)])
    assert h2.alerts == []


def test_unknown_reported_speeds_fall_back_to_positions() -> None:
    h = Harness()
    # -1 and 999 m/s are a unit's way of saying "unknown": the speed comes from positions
    speeds = [-1.0, 999.0, -1.0, 999.0, -1.0, 999.0, -1.0, 999.0]
    h.fixes([("b1", 2 * i, *east(20.0 * i), v) for i, v in enumerate(speeds)])
    assert h.alerts == []
    # 25 m/s (90 km/h) implied from positions, for more than 10 s: overspeeding
    h.fixes([("b1", 14 + 2 * i, *east(140.0 + 50.0 * i), -1.0) for i in range(1, 10)])
    got = h.of("overspeed")
    assert len(got) == 1 and got[0].opened_at == at(26)
    assert got[0].evidence["speed_kmh"] == pytest.approx(90.0, abs=0.2)
