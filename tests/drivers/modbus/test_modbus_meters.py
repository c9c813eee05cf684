"""Water meter semantics on hand-made polls: rollover, replacement, derived flow,
reverse flow, alarms as events, range checks and failed polls."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.batch import NS_PER_S, Quality
from gateway.drivers.modbus.meters import MeterState
from gateway.drivers.modbus.profiles import default_profiles_dir, load_profiles
from gateway.streams import StreamRegistry

PROFILES = load_profiles(default_profiles_dir())
T0 = 1_764_288_000 * NS_PER_S


def poll(
    meter: AmrMeter, at_s: float, **values: float
) -> tuple[dict[str, tuple[float, int]], list[str]]:
    row = [values.get(p.name, 0.0) for p in meter.points]
    batch, events = meter.good(T0 + int(at_s * NS_PER_S), row)
    names = {}
    for sid, v, q in zip(batch.stream, batch.value, batch.quality, strict=True):
        names[meter.registry.name_of(int(sid)).rpartition("/")[2]] = (float(v), int(q))
    return names, [e.kind for e in events]


class AmrMeter(MeterState):
    """An AMR meter's state that keeps its registry, to name the streams in asserts."""

    def __init__(self) -> None:
        self.registry = StreamRegistry()
        super().__init__("dma-01/amr-001", PROFILES["amr-meter"], self.registry)


@pytest.fixture
def meter() -> AmrMeter:
    return AmrMeter()


def test_flow_is_derived_from_totaliser_deltas(meter: AmrMeter) -> None:
    first, _ = poll(meter, 0, volume_m3=100.000)
    assert "flow_lps" not in first  # no delta yet: no flow, rather than a made-up one
    got, events = poll(meter, 10, volume_m3=100.050)  # 50 L in 10 s
    assert got["flow_lps"][0] == pytest.approx(5.0)
    assert got["flow_lps"][1] == Quality.SUBSTITUTED
    assert events == []


def test_rollover_is_a_wrap_not_a_backwards_flow(meter: AmrMeter) -> None:
    poll(meter, 0, volume_m3=99_999.990)
    got, events = poll(meter, 10, volume_m3=0.010)  # wrapped at 100,000 m3: 20 L passed
    assert events == ["rollover"]
    assert got["flow_lps"] == (pytest.approx(2.0), Quality.SUBSTITUTED)


def test_large_backwards_jump_is_a_meter_replacement(meter: AmrMeter) -> None:
    poll(meter, 0, volume_m3=54_321.0)
    got, events = poll(meter, 10, volume_m3=3.2)
    assert events == ["replacement"]
    assert "flow_lps" not in got  # no flow across a swap
    got, events = poll(meter, 20, volume_m3=3.25)  # the new meter is the new baseline
    assert got["flow_lps"][0] == pytest.approx(5.0) and events == []


def test_small_backwards_step_is_reverse_flow(meter: AmrMeter) -> None:
    poll(meter, 0, volume_m3=1000.0)
    got, _ = poll(meter, 10, volume_m3=999.99)
    value, quality = got["flow_lps"]
    assert value == pytest.approx(-1.0) and quality & Quality.REVERSE_FLOW


def test_reverse_flow_bit_flags_the_flow(meter: AmrMeter) -> None:
    poll(meter, 0, volume_m3=1000.0)
    got, _ = poll(meter, 10, volume_m3=1000.01, reverse_flow=1.0)
    assert got["flow_lps"][1] & Quality.REVERSE_FLOW


def test_alarm_bits_become_events_on_change(meter: AmrMeter) -> None:
    _, events = poll(meter, 0, volume_m3=1.0)
    assert events == []
    _, events = poll(meter, 10, volume_m3=1.0, tamper=1.0, low_battery=1.0)
    assert sorted(events) == ["low_battery", "tamper"]
    _, events = poll(meter, 20, volume_m3=1.0, tamper=1.0, low_battery=1.0)
    assert events == []  # still raised: no new event
    _, events = poll(meter, 30, volume_m3=1.0, low_battery=1.0, empty_pipe=1.0, meter_leak=1.0)
    assert sorted(events) == ["empty_pipe", "meter_leak", "tamper_cleared"]


def test_out_of_range_keeps_the_value_and_flags_it(meter: AmrMeter) -> None:
    got, _ = poll(meter, 0, volume_m3=1.0, battery_pct=250.0)
    assert got["battery_pct"] == (250.0, Quality.OUT_OF_RANGE)


def test_a_failed_poll_is_nan_with_its_reason_never_the_last_value(meter: AmrMeter) -> None:
    poll(meter, 0, volume_m3=1.0)
    batch = meter.failed(T0 + 5 * NS_PER_S, Quality.COMM_ERROR | Quality.TIMEOUT)
    assert np.isnan(batch.value).all()
    assert (batch.quality == Quality.COMM_ERROR | Quality.TIMEOUT).all()
    assert len(batch) == len(meter.points) + 1  # the derived flow too
    assert (batch.ts == T0 + 5 * NS_PER_S).all()


def test_flow_meter_negative_flow_is_reverse() -> None:
    registry = StreamRegistry()
    emf = MeterState("dma-01/inlet", PROFILES["emf-flow-meter"], registry)
    row = [-3.0 if p.name == "flow_lps" else 0.0 for p in emf.points]
    batch, _ = emf.good(T0, row)
    flow = batch.stream == registry.id_of("dma-01/inlet/flow_lps")
    assert batch.quality[flow][0] == Quality.REVERSE_FLOW
    assert "dma-01/inlet/flow_lps" in registry and len(batch) == len(emf.points)
