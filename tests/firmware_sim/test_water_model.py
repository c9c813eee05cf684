"""The water network model: determinism, demand shape, and leaks that move
inflow and pressures together."""

from __future__ import annotations

import pytest

from firmware_sim.water import LeakSpec, ModelSettings, WaterModel
from firmware_sim.water.model import diurnal, weekly

HOUR = 3600.0


def run(settings: ModelSettings, until: float) -> WaterModel:
    model = WaterModel(settings)
    model.advance_to(until)
    return model


def test_same_seed_same_state_and_other_seeds_differ() -> None:
    a = run(ModelSettings(dmas=2, seed=11, amr_per_dma=2), 3 * HOUR)
    b = WaterModel(ModelSettings(dmas=2, seed=11, amr_per_dma=2))
    for t in (100.0, 2000.0, 3 * HOUR):  # stepping in pieces changes nothing
        b.advance_to(t)
    c = run(ModelSettings(dmas=2, seed=12, amr_per_dma=2), 3 * HOUR)
    for i in range(2):
        assert a.dma(i) == b.dma(i)
        assert a.dma(i).inflow_lps != c.dma(i).inflow_lps


def test_demand_is_diurnal_and_weekly() -> None:
    assert diurnal(3.0) < 0.5 and diurnal(7.5) > 1.2  # night minimum, morning peak
    assert diurnal(19.5) > diurnal(15.0)
    assert weekly(6) < weekly(5) < weekly(0) == 1.0
    # start is 00:00 UTC = 05:30 IST; 22:00 UTC is 03:30 IST, the night minimum
    model = WaterModel(ModelSettings(seed=2, noise=0.0))
    flows = {}
    for hour in (2, 22):  # 07:30 and 03:30 IST
        model.advance_to(hour * HOUR)
        flows[hour] = model.dma(0).inflow_lps
    assert flows[2] > 2.5 * flows[22]


def test_pressure_falls_with_flow_along_the_dma() -> None:
    model = run(ModelSettings(seed=3), 2 * HOUR)
    state = model.dma(0)
    assert model.settings.source_head_m > state.inlet_head_m > state.zone_head_m[0]
    assert state.zone_head_m[0] > state.zone_head_m[1]


def test_a_leak_raises_inflow_and_lowers_pressure_consistently() -> None:
    leak = LeakSpec(dma=1, at_s=HOUR, rate_lps=6.0, ramp_s=2 * HOUR)
    base = ModelSettings(dmas=2, seed=4)
    leaky = ModelSettings(dmas=2, seed=4, leaks=(leak,))
    for t, share in ((0.5 * HOUR, 0.0), (2 * HOUR, 0.5), (4 * HOUR, 1.0)):
        a, b = run(base, t), run(leaky, t)
        extra = b.dma(0).inflow_lps - a.dma(0).inflow_lps
        assert extra == pytest.approx(6.0 * share, abs=1e-6)
        if share:
            assert b.dma(0).inlet_head_m < a.dma(0).inlet_head_m
            assert b.dma(0).zone_head_m[0] < a.dma(0).zone_head_m[0]
        # the other DMA does not notice
        assert b.dma(1) == a.dma(1)
    # the inlet totaliser counts the leaked water too
    a, b = run(base, 4 * HOUR), run(leaky, 4 * HOUR)
    leaked = 6.0 * (HOUR + 1.0 * HOUR)  # ramp (average half rate for 2 h) + 1 h full
    assert b.dma(0).volume_l - a.dma(0).volume_l == pytest.approx(leaked, rel=0.01)


def test_a_burst_is_abrupt() -> None:
    burst = LeakSpec(dma=1, at_s=600.0, rate_lps=25.0, kind="burst")
    before = run(ModelSettings(seed=5, leaks=(burst,)), 599.0).dma(0).leak_lps
    after = run(ModelSettings(seed=5, leaks=(burst,)), 601.0).dma(0).leak_lps
    assert after - before == pytest.approx(25.0)


def test_amr_meters_count_part_of_the_demand() -> None:
    model = WaterModel(ModelSettings(seed=6, amr_per_dma=3))
    start = list(model.dma(0).amr_volume_l)
    model.advance_to(HOUR)
    used = [b - a for a, b in zip(start, model.dma(0).amr_volume_l, strict=True)]
    assert all(u > 0 for u in used)
    assert sum(used) < model.dma(0).volume_l  # customers use less than the DMA takes in


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="leak in DMA 3"):
        ModelSettings(dmas=2, leaks=(LeakSpec(dma=3, at_s=0, rate_lps=1),))
