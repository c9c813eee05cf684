"""The vehicle rules as a runtime stage: what passes through, what is ignored,
settings from TOML, and a fleet of 2,000 buses."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from gateway.analytics.vehicle import VehicleRules
from gateway.analytics.vehicle_settings import ModelThresholds, SpeedZone, VehicleRulesSettings
from gateway.batch import FixBatch, Quality, ReadingBatch
from gateway.bundle import Bundle
from gateway.config import ConfigError, convert
from gateway.events import Alert, Event, Severity
from gateway.parts import Stage
from gateway.streams import StreamRegistry
from tests.analytics.vehicle_harness import LAT0, LON0, NS, T0, Harness, at


def test_is_a_stage_that_adds_alerts_and_keeps_the_rest() -> None:
    h = Harness()
    stage: Stage = h.rules
    earlier = Alert("leak", "dma-07", Severity.WARNING, T0)
    fixes = h.fix_batch([("b1", t, LAT0, LON0, 90 / 3.6) for t in range(0, 12, 2)])
    readings = h.reading_batch([("b1", "fuel_pct", 0, 50.0)])
    bundle = Bundle(readings=readings, fixes=fixes, alerts=(earlier,))
    out = stage.process(bundle)
    assert out.readings is readings and out.fixes is fixes
    assert out.alerts[0] is earlier and [a.kind for a in out.alerts[1:]] == ["overspeed"]
    # nothing to say: the very same bundle comes back
    quiet = Bundle(readings=h.reading_batch([("b1", "fuel_pct", 20, 50.0)]))
    assert h.rules.process(quiet) is quiet


def test_flagged_and_foreign_readings_are_ignored() -> None:
    h = Harness()
    hot = h.reading_batch([("b1", "coolant_c", t, 120.0) for t in range(0, 200, 30)])
    flagged = ReadingBatch.of(
        hot.ts, hot.stream, hot.value, np.full(len(hot), Quality.COMM_ERROR, np.uint8)
    )
    assert h.run(Bundle(readings=flagged)) == []
    other = [h.registry.register(name) for name in ("dma-07/coolant_c", "bus/b1/x/coolant_c")]
    foreign = ReadingBatch.of(
        [at(t) for t in range(0, 200, 30)] * 2, [other[0]] * 7 + [other[1]] * 7, [120.0] * 14
    )
    unknown = ReadingBatch.of([at(300)], [9999], [120.0])  # a stream id nobody registered
    assert h.run(Bundle(readings=ReadingBatch.concat([foreign, unknown]))) == []
    # streams registered after the stage started are picked up
    assert h.readings([("b2", "coolant_c", t, 120.0) for t in range(400, 500, 30)])


def test_settings_from_toml() -> None:
    text = """
    default_model = "diesel"
    vehicle_models = { "MH12-1" = "cng" }
    [models.diesel]
    speed_limit_kmh = 70.0
    [models.cng]
    coolant_max_c = 98.0
    coolant_clear_c = 94.0
    [[zones]]
    name = "school"
    limit_kmh = 25.0
    polygon = [[18.52, 73.84], [18.53, 73.84], [18.53, 73.85]]
    """
    s = convert(VehicleRulesSettings, tomllib.loads(text), file="gw.toml", key="vehicle_rules")
    assert s.models["cng"].coolant_max_c == 98.0 and s.models["diesel"].speed_limit_kmh == 70.0
    assert s.zones[0].polygon[2] == (18.53, 73.85)
    h = Harness(s)
    h.fixes([("MH12-2", t, LAT0, LON0, 75 / 3.6) for t in range(0, 12, 2)])
    assert h.of("overspeed")[0].evidence["limit_kmh"] == 70.0  # the default model's cap
    bad = 'vehicle_models = { "MH12-1" = "electric" }'
    with pytest.raises(ConfigError, match="electric"):
        convert(VehicleRulesSettings, tomllib.loads(bad), file="gw.toml", key="vehicle_rules")


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="hysteresis edge"):
        ModelThresholds(battery_min_v=24.0, battery_clear_v=23.0)
    with pytest.raises(ValueError, match="positive"):
        ModelThresholds(coolant_hold_s=-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        SpeedZone("x", 20.0, ((1.0, 2.0), (1.0, 3.0)))
    with pytest.raises(ValueError, match="bunching_ratio"):
        VehicleRulesSettings(bunching_ratio=1.2)


def test_a_fleet_of_2000_buses() -> None:
    registry = StreamRegistry()
    now = [T0]
    rules = VehicleRules(VehicleRulesSettings(), registry, clock=lambda: now[0])
    n = 2000
    ids = np.asarray([registry.vehicles.intern(f"MH12-{i:04d}") for i in range(n)], np.int32)
    fast = ids[::100]  # 20 buses over the limit
    alerts: list[Alert] = []
    for step in range(8):
        t = now[0] = T0 + step * 2 * NS
        speed = np.full(n, 12.0, np.float32)
        speed[fast] = 25.0  # 90 km/h
        lat = LAT0 + ids * 1e-4 + step * 2e-5
        fixes = FixBatch(
            np.full(n, t, np.int64), ids, lat, np.full(n, LON0), speed,
            np.zeros(n, np.float32), np.full(n, 3, np.uint8),
        )  # fmt: skip
        alerts.extend(rules.process(Bundle(fixes=fixes)).alerts)
    assert sorted(a.asset for a in alerts) == sorted(f"bus/MH12-{i:04d}" for i in fast)
    assert all(a.kind == "overspeed" for a in alerts)
    # then the whole fleet falls silent: one stale alert per bus, once
    now[0] = T0 + 60 * NS
    stale = rules.tick(now[0])
    assert len(stale) == n and {a.kind for a in stale} == {"stale"}
    assert rules.tick(now[0] + NS) == []


def test_warm_up_and_open_alerts_per_vehicle() -> None:
    VehicleRules.warm_up()
    h = Harness()
    h.events([Event(at(0), "bus/b1", "panic"), Event(at(0), "bus/b2", "panic")])
    assert [a.asset for a in h.rules.open_alerts("b2")] == ["bus/b2"]
    assert len(h.rules.open_alerts()) == 2
