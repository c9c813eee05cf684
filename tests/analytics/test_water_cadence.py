"""Water detectors at reporting intervals from 1 s to 60 min, and mixed within a DMA.

The DMA of `test_water.dma_series` is simulated each minute, then stored the way
loggers store it: flows as interval means, pressures as samples, stamped at the
start of each interval (as `pandas.resample` labels them) or, where streams of
different intervals are compared, at its end (as the detectors read a mean).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from gateway.analytics import water_ingest as wi
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.batch import ReadingBatch
from gateway.events import Alert
from gateway.streams import StreamRegistry
from tests.analytics.test_water import DMA, FLOW, NS, P_1, P_IN, T0, dma_series, opened, run

Series = Mapping[str, tuple[np.ndarray, np.ndarray]]  # stream -> (ts in s, values)


def logged(
    ts: np.ndarray, values: np.ndarray, step_s: int, *, mean: bool, end: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """1-minute values as a logger stores them every `step_s`: means or samples,
    stamped at the interval's start or end."""
    k = step_s // 60
    n = len(ts) // k
    blocks = values[: n * k].reshape(n, k)
    stamps = ts[: n * k : k] + (step_s if end else 0)
    if not mean:
        return stamps, blocks[:, -1] if end else blocks[:, 0]
    return stamps, blocks.mean(axis=1)


def resampled(
    ts: np.ndarray, series: Mapping[str, np.ndarray], steps: Mapping[str, int], *, end: bool = False
) -> Series:
    return {
        name: logged(ts, v, steps[name], mean=name.endswith("flow_lps"), end=end)
        for name, v in series.items()
    }


def merged(reg: StreamRegistry, series: Series) -> ReadingBatch:
    """Streams with their own timestamps, as one batch in time order."""
    ts = np.concatenate([t for t, _ in series.values()])
    ids = np.concatenate(
        [np.full(len(t), reg.register(name), np.int32) for name, (t, _) in series.items()]
    )
    vals = np.concatenate([v for _, v in series.values()])
    order = np.argsort(ts, kind="stable")
    return ReadingBatch.of(ts[order].astype(np.int64) * NS, ids[order], vals[order])


def faults(alerts: list[Alert], fault: str) -> list[Alert]:
    return [a for a in opened(alerts, "sensor_fault") if a.evidence["fault"] == fault]


START = T0 + 14.4 * 86_400  # a leak starts after two weeks of learning
DAYS = 20


def leak_dma(step_s: int, lps: float, *, seed: int = 3) -> Series:
    ts = T0 + np.arange(0, DAYS * 86_400, 60)
    ts, s = dma_series(DAYS, seed=seed, extra=np.where(ts >= START, lps, 0.0))
    return resampled(ts, s, dict.fromkeys(s, step_s))


@pytest.mark.parametrize("step_s", [60, 300, 900, 3600])
def test_no_leak_no_alerts_and_no_dropout_storm(step_s: int) -> None:
    reg = StreamRegistry()
    alerts, det = run(merged(reg, leak_dma(step_s, 0.0)), reg)
    assert opened(alerts, "leak") == [] and opened(alerts, "burst") == []
    assert opened(alerts, "sensor_fault") == []
    assert set(det.intervals_s().values()) == {float(step_s)}


@pytest.mark.parametrize("step_s", [60, 300, 900, 3600])
@pytest.mark.parametrize("lps", [1.0, 2.5])  # 10 % and 25 % of the ~10 L/s mean inflow
def test_leak_is_found_at_every_interval(step_s: int, lps: float) -> None:
    reg = StreamRegistry()
    alerts, _ = run(merged(reg, leak_dma(step_s, lps)), reg)
    found = [
        a for a in opened(alerts, "leak") + opened(alerts, "burst") if a.opened_at >= START * NS
    ]
    assert found, f"no leak found at {step_s} s"
    first = min(found, key=lambda a: a.opened_at)
    assert first.opened_at - START * NS < 24 * 3600 * NS
    leaks = opened(alerts, "leak")
    assert leaks and 0.3 * lps < leaks[0].magnitude < 2.5 * lps


@pytest.mark.parametrize("step_s", [900, 3600])
def test_burst_on_coarse_data_is_judged_at_its_resolution(step_s: int) -> None:
    reg = StreamRegistry()
    days = 10
    at = T0 + int(8.45 * 86_400) // step_s * step_s  # a Friday, on a logger's stamp
    ts = T0 + np.arange(0, days * 86_400, 60)
    ts, s = dma_series(days, seed=7, extra=np.where(ts >= at, 4.0, 0.0))
    s[P_1] = np.where(ts >= at, s[P_1] - 5.0, s[P_1])
    alerts, det = run(merged(reg, resampled(ts, s, dict.fromkeys(s, step_s))), reg)
    bursts = [a for a in opened(alerts, "burst") if a.opened_at >= at * NS]
    assert bursts
    # known no earlier than the reading that shows it, and within two intervals of it
    assert at * NS <= bursts[0].opened_at <= (at + 2 * step_s + 600) * NS
    notes = det.cadence.notes["dma-01"]
    assert any(n.startswith("burst: judged at") for n in notes)
    assert any(n.startswith("transient: off") for n in notes)


def test_dropout_at_15_minutes_is_one_alert_per_stream() -> None:
    reg = StreamRegistry()
    series = leak_dma(900, 0.0)
    silent = (T0 + 5 * 86_400, T0 + 5 * 86_400 + 3 * 3600)  # three hours without readings
    cut = {name: (t[(t < silent[0]) | (t >= silent[1])], v[(t < silent[0]) | (t >= silent[1])])
           for name, (t, v) in series.items()}  # fmt: skip
    alerts, _ = run(merged(reg, cut), reg)
    drops = faults(alerts, "dropout")
    assert sorted(a.asset for a in drops) == sorted(DMA.streams())
    for a in drops:
        assert a.started_at == (silent[0] - 900) * NS
        assert a.opened_at == a.started_at + 4 * 900 * NS  # dropout_intervals x 15 min
        assert a.cleared_at == silent[1] * NS
    assert opened(alerts, "leak") == [] and opened(alerts, "burst") == []


def test_mixed_intervals_in_one_dma_mass_balance() -> None:
    """Inlet flow each minute, pressures every 15 minutes, customer meters (AMR) hourly."""
    reg = StreamRegistry()
    days = 12
    amr = "dma-01/customers/flow_lps"
    ts = T0 + np.arange(0, days * 86_400, 60)
    start = T0 + 10.3 * 86_400
    ts, s = dma_series(days, seed=8, extra=np.where(ts >= start, 1.5, 0.0))
    s[amr] = s[FLOW] - np.where(ts >= start, 1.5, 0.0) - 0.5
    steps = {FLOW: 60, P_IN: 900, P_1: 900, amr: 3600}
    dma = DmaSettings("dma-01", inflow=(FLOW,), pressure=(P_IN, P_1), consumption=(amr,))
    alerts, det = run(merged(reg, resampled(ts, s, steps, end=True)), reg, [dma])
    assert det.intervals_s() == {k: float(v) for k, v in steps.items()}
    assert det.counters[wi.C_LATE] <= 60  # only before the AMR's interval is known
    leaks = [a for a in opened(alerts, "leak") if a.opened_at >= start * NS]
    assert leaks and "mass_balance" in leaks[0].evidence["detectors"]
    assert leaks[0].opened_at - start * NS < 8 * 3600 * NS
    assert [a for a in opened(alerts, "leak") if a.opened_at < start * NS] == []
    # the AMR meter's first hour, before its interval is known, may be one dropout
    assert len(faults(alerts, "dropout")) <= 1
    assert all(a.cleared_at is not None for a in faults(alerts, "dropout"))


def test_configured_interval_needs_no_learning() -> None:
    reg = StreamRegistry()
    dma = DmaSettings("dma-01", inflow=(FLOW,), pressure=(P_IN, P_1), interval_s=900,
                      intervals={P_1: 3600})  # fmt: skip
    steps = {FLOW: 900, P_IN: 900, P_1: 3600}
    ts = T0 + np.arange(0, 3 * 86_400, 60)
    ts, s = dma_series(3, seed=1)
    alerts, det = run(merged(reg, resampled(ts, s, steps)), reg, [dma])
    assert det.intervals_s() == {k: float(v) for k, v in steps.items()}
    assert det.counters[wi.C_LATE] == 0
    assert faults(alerts, "dropout") == []


def test_one_second_data() -> None:
    """Sub-minute readings are averaged into minutes: a burst on 1 s data is found."""
    reg = StreamRegistry()
    days = 6
    rng = np.random.default_rng(4)
    ts = T0 + np.arange(0, days * 86_400, 60)
    at = T0 + int(5.45 * 86_400)
    ts, s = dma_series(days, seed=7, extra=np.where(ts >= at, 4.0, 0.0))
    s[P_1] = np.where(ts >= at, s[P_1] - 5.0, s[P_1])
    fine = np.arange(ts[0], ts[-1] + 1, 1)
    series = {
        n: (fine, np.interp(fine, ts, v) + 0.02 * rng.standard_normal(len(fine)))
        for n, v in s.items()
    }
    alerts, det = run(merged(reg, series), reg, rows=500_000)
    assert set(det.intervals_s().values()) == {1.0}
    bursts = [a for a in opened(alerts, "burst") if a.opened_at >= at * NS]
    assert bursts and bursts[0].opened_at - at * NS <= 8 * 60 * NS
    assert faults(alerts, "dropout") == [] and faults(alerts, "spike") == []


def test_interval_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="intervals names streams"):
        DmaSettings("dma-01", inflow=(FLOW,), intervals={"dma-01/other/flow_lps": 60})
    with pytest.raises(ValueError, match="seconds > 0"):
        DmaSettings("dma-01", inflow=(FLOW,), interval_s=-1)
    with pytest.raises(ValueError, match="dropout_intervals"):
        WaterSettings(dropout_intervals=0)


def first_leak(alerts: list[Alert], start: float) -> Alert:
    found = [
        a for a in opened(alerts, "leak") + opened(alerts, "burst") if a.opened_at >= start * NS
    ]
    assert found, "the leak was not found"
    assert [a for a in opened(alerts, "leak") if a.opened_at < start * NS] == []
    return min(found, key=lambda a: a.opened_at)


def test_growing_leak_on_15_minute_data_is_found_the_first_night() -> None:
    """A leak growing over 24 h to 30 % of the inflow from 09:36: found the first night,
    14 h after the first trickle (time counted from there, as in bench.leaks)."""
    reg = StreamRegistry()
    ts = T0 + np.arange(0, DAYS * 86_400, 60)
    extra = np.clip((ts - START) / (24 * 3600), 0, 1) * 3.0
    ts, s = dma_series(DAYS, seed=11, extra=extra)
    alerts, _ = run(merged(reg, resampled(ts, s, dict.fromkeys(s, 900))), reg)
    leak = first_leak(alerts, START)
    assert leak.kind == "leak" and leak.opened_at - START * NS < 15 * 3600 * NS
    assert 2.0 < leak.magnitude < 4.0


def test_abrupt_leak_on_15_minute_data_opens_on_the_additive_cusum() -> None:
    """15 % of the inflow from 18:20, too small for a burst at 15-minute resolution:
    by night the profile CUSUM's excess is a constant L/s, so it opens alone."""
    reg = StreamRegistry()
    start = T0 + (14 + 18.33 / 24) * 86_400
    ts = T0 + np.arange(0, DAYS * 86_400, 60)
    ts, s = dma_series(DAYS, seed=12, extra=np.where(ts >= start, 1.5, 0.0))
    alerts, _ = run(merged(reg, resampled(ts, s, dict.fromkeys(s, 900))), reg)
    leak = first_leak(alerts, start)
    assert leak.evidence["detectors"][0] == "inflow_cusum"
    assert leak.opened_at - start * NS < 7.5 * 3600 * NS
