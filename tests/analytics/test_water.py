"""Water detectors on synthetic DMAs with known leaks, bursts, transients and sensor faults."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from gateway.analytics.water import WaterDetectors
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, AlertState
from gateway.streams import StreamRegistry

NS = 1_000_000_000
T0 = 1_767_205_800  # 2026-01-01 00:00 Asia/Kolkata, epoch seconds
FLOW, P_IN, P_1 = "dma-01/inlet/flow_lps", "dma-01/inlet/pressure_m", "dma-01/pz-1/pressure_m"
DMA = DmaSettings("dma-01", inflow=(FLOW,), pressure=(P_IN, P_1))


def dma_series(
    days: float, *, seed: int = 0, extra: np.ndarray | None = None, step_s: int = 60
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A DMA with a diurnal demand (mean ~10 L/s), daily weather noise, and pressures
    that fall with flow. `extra` (L/s per sample) is added to the inflow (a leak)."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, int(days * 86_400), step_s)
    h = ((ts - T0) % 86_400) / 3600.0
    pattern = 0.35 + 1.1 * np.exp(-((h - 7.5) ** 2) / 3) + 0.7 * np.exp(-((h - 19.5) ** 2) / 5)
    pattern += 0.35 * np.exp(-((h - 13) ** 2) / 8)
    day = (ts - T0) // 86_400
    weather = 1 + 0.02 * rng.standard_normal(int(days) + 1)
    q = 10 * pattern / pattern.mean() * weather[day] * (1 + 0.03 * rng.standard_normal(len(ts)))
    if extra is not None:
        q = q + extra
    p_in = 45 - 0.02 * q**1.5 + 0.03 * rng.standard_normal(len(ts))
    p_1 = p_in - 0.004 * q**1.85 + 0.03 * rng.standard_normal(len(ts))
    return ts, {FLOW: q, P_IN: p_in, P_1: p_1}


def readings(reg: StreamRegistry, ts: np.ndarray, series: dict[str, np.ndarray]) -> ReadingBatch:
    names = list(series)
    ids = np.asarray([reg.register(n) for n in names], np.int32)
    t = np.repeat(np.asarray(ts, np.int64) * NS, len(names))
    return ReadingBatch.of(t, np.tile(ids, len(ts)), np.column_stack(list(series.values())).ravel())


def run(
    batch: ReadingBatch,
    reg: StreamRegistry,
    dmas: Sequence[DmaSettings] = (DMA,),
    settings: WaterSettings | None = None,
    rows: int = 20_000,
) -> tuple[list[Alert], WaterDetectors]:
    det = WaterDetectors(reg, dmas, settings)
    out: list[Alert] = []
    for lo in range(0, len(batch), rows):
        out += det.process(Bundle(readings=batch[lo : lo + rows])).alerts
    return out, det


def final(alerts: Sequence[Alert]) -> dict[str, Alert]:
    latest: dict[str, Alert] = {}
    for a in alerts:
        latest[a.id] = a
    return latest


def opened(alerts: Sequence[Alert], kind: str) -> list[Alert]:
    return [a for a in final(alerts).values() if a.kind == kind]


def test_no_leak_no_alerts_after_warm_up() -> None:
    reg = StreamRegistry()
    ts, s = dma_series(21, seed=3)
    alerts, det = run(readings(reg, ts, s), reg)
    noisy = [a for a in opened(alerts, "leak") + opened(alerts, "burst")]
    assert [a for a in noisy if a.opened_at > (T0 + 7 * 86_400) * NS] == []
    assert det.counters.sum() == 0


@pytest.mark.parametrize("fraction", [0.08, 0.2])
def test_leak_is_found_with_size_and_start(fraction: float) -> None:
    reg = StreamRegistry()
    ts, _ = dma_series(1)
    start_day = 15.4
    days = 20
    ts = T0 + np.arange(0, days * 86_400, 60)
    leak = np.where(ts >= T0 + start_day * 86_400, 10 * fraction, 0.0)
    ts, s = dma_series(days, seed=5, extra=leak)
    alerts, _ = run(readings(reg, ts, s), reg)
    start_ns = int((T0 + start_day * 86_400) * NS)
    found = [a for a in opened(alerts, "leak") if a.opened_at >= start_ns]
    assert found, "the leak was not found"
    first = min(found, key=lambda a: a.opened_at)
    assert first.opened_at - start_ns < 30 * 3600 * NS
    assert first.asset == "dma-01"
    assert 0.3 * 10 * fraction < first.magnitude < 2.5 * 10 * fraction
    assert first.started_at is not None and first.started_at <= first.opened_at
    assert set(first.evidence["detectors"]) & {"night_flow", "inflow_cusum"}


def test_burst_is_caught_within_minutes() -> None:
    reg = StreamRegistry()
    days = 10
    ts = T0 + np.arange(0, days * 86_400, 60)
    at = T0 + int(8.45 * 86_400)  # a Friday: weekday profiles are learned by then
    ts, s = dma_series(days, seed=7, extra=np.where(ts >= at, 4.0, 0.0))
    s[P_1] = np.where(ts >= at, s[P_1] - 5.0, s[P_1])  # the interior pressure drops with it
    alerts, _ = run(readings(reg, ts, s), reg)
    bursts = [a for a in opened(alerts, "burst") if a.opened_at >= at * NS]
    assert bursts
    b = bursts[0]
    assert b.opened_at - at * NS <= 8 * 60 * NS
    assert abs(b.started_at - at * NS) <= 5 * 60 * NS  # type: ignore[operator]
    assert 2.0 < b.magnitude < 6.0
    assert b.evidence["pressure_drop_m"] > 3.0


def test_daily_pressure_steps_and_correlated_demand_noise_raise_no_burst() -> None:
    """A PRV timetable drops the pressures 8 m at 23:00 and restores them at 05:00, in
    one minute, every day; demand noise is correlated over ~5 minutes. Once the
    profile knows the day, neither is a burst; a real one still is."""
    reg = StreamRegistry()
    days = 12
    ts = T0 + np.arange(0, days * 86_400, 60)
    at = T0 + int(10.3 * 86_400)
    ts, s = dma_series(days, seed=11, extra=np.where(ts >= at, 4.0, 0.0))
    rng = np.random.default_rng(12)
    ar = np.zeros(len(ts))
    for k in range(1, len(ts)):
        ar[k] = 0.82 * ar[k - 1] + 0.57 * rng.standard_normal()
    s[FLOW] = s[FLOW] * (1 + 0.05 * ar)
    hour = ((ts - T0) % 86_400) / 3600
    night = (hour >= 23) | (hour < 5)
    for name in (P_IN, P_1):
        s[name] = np.where(night, s[name] - 8.0, s[name])
    s[P_1] = np.where(ts >= at, s[P_1] - 5.0, s[P_1])
    alerts, _ = run(readings(reg, ts, s), reg)
    # min_history is 4: by day 6 four weekdays (Thu, Fri, Mon, Tue) are learned
    bursts = [a for a in opened(alerts, "burst") if a.opened_at >= (T0 + 6 * 86_400) * NS]
    assert [b.opened_at >= at * NS for b in bursts] == [True], [
        (b.opened_at / NS - T0) / 86_400 for b in bursts
    ]
    assert bursts[0].opened_at - at * NS <= 8 * 60 * NS


def test_transient_onset_within_a_second_with_magnitude() -> None:
    reg = StreamRegistry()
    hz = 200
    n = hz * 120
    t = T0 * NS + np.arange(n, dtype=np.int64) * (NS // hz)
    rng = np.random.default_rng(1)
    p = 40 + 0.05 * rng.standard_normal(n)
    onset = 60 * hz
    k = np.arange(n - onset)
    p[onset:] += 8.0 * np.exp(-k / (0.4 * hz)) * np.sin(2 * np.pi * 3 * k / hz)
    pid = reg.register(P_1)
    flow = reg.register(FLOW)
    minutes = T0 * NS + np.arange(3, dtype=np.int64) * 60 * NS
    batch = ReadingBatch.concat(
        [
            ReadingBatch.of(t, np.full(n, pid), p),
            ReadingBatch.of(minutes, np.full(3, flow), [5.0] * 3),
        ]
    ).sorted_by_time()
    alerts, _ = run(batch, reg, rows=5_000)
    [tr] = opened(alerts, "transient")
    t_onset = int(t[onset])
    assert tr.asset == "dma-01/pz-1"
    assert 0 <= tr.opened_at - t_onset <= NS  # detected within 1 s of the onset
    assert abs(tr.started_at - t_onset) <= NS // 10  # type: ignore[operator]
    assert 5.0 < tr.magnitude < 9.0
    assert tr.state is AlertState.CLEARED


def test_sensor_faults_stuck_spike_dropout_reverse() -> None:
    reg = StreamRegistry()
    ts, s = dma_series(3, seed=2)
    n = len(ts)
    s[P_IN][1000:1200] = s[P_IN][1000]  # stuck for 200 min
    s[P_1][2000] += 25.0  # one spike
    s[FLOW][3000:3010] = -2.0  # reverse flow for 10 min
    batch = readings(reg, ts, s)
    keep = ~(
        (batch.stream == reg.id_of(P_1)) & (batch.ts >= ts[2500] * NS) & (batch.ts < ts[2600] * NS)
    )
    alerts, _ = run(batch[keep], reg)
    faults = {(a.asset, a.evidence["fault"]): a for a in opened(alerts, "sensor_fault")}
    stuck = faults[(P_IN, "stuck")]
    assert stuck.started_at == ts[1000] * NS and stuck.state is AlertState.CLEARED
    assert stuck.cleared_at == ts[1200] * NS
    assert faults[(P_1, "spike")].magnitude == pytest.approx(25.0, abs=0.5)
    dropout = faults[(P_1, "dropout")]
    assert dropout.started_at == ts[2499] * NS and dropout.cleared_at == ts[2600] * NS
    assert faults[(FLOW, "reverse_flow")].magnitude == -2.0
    assert n > 3000


def test_flat_zero_stream_is_stuck_and_raises_no_leak() -> None:
    reg = StreamRegistry()
    ts, s = dma_series(10, seed=4)
    s[FLOW][:] = 0.0
    alerts, _ = run(readings(reg, ts, s), reg)
    stuck = [a for a in opened(alerts, "sensor_fault") if a.evidence["fault"] == "stuck"]
    assert stuck and stuck[0].evidence["flat_zero"] is True and stuck[0].asset == FLOW
    assert opened(alerts, "leak") == [] and opened(alerts, "burst") == []


def test_mass_balance_with_customer_meters() -> None:
    reg = StreamRegistry()
    days = 12
    ts = T0 + np.arange(0, days * 86_400, 60)
    start = T0 + 10.3 * 86_400
    ts, s = dma_series(days, seed=8, extra=np.where(ts >= start, 1.5, 0.0))
    s["dma-01/customers/flow_lps"] = s[FLOW] - np.where(ts >= start, 1.5, 0.0) - 0.5
    dma = DmaSettings("dma-01", inflow=(FLOW,), pressure=(P_IN, P_1),
                      consumption=("dma-01/customers/flow_lps",))  # fmt: skip
    alerts, _ = run(readings(reg, ts, s), reg, [dma])
    leaks = [a for a in opened(alerts, "leak") if a.opened_at >= start * NS]
    assert leaks and "mass_balance" in leaks[0].evidence["detectors"]
    assert leaks[0].opened_at - start * NS < 6 * 3600 * NS


def test_pressure_drift_with_normal_inflow_is_a_sensor_fault() -> None:
    reg = StreamRegistry()
    days = 14
    ts, s = dma_series(days, seed=9)
    start = T0 + 10 * 86_400
    s[P_1] = s[P_1] - np.clip((ts - start) / 86_400, 0, None) * 1.0  # 1 m a day
    alerts, _ = run(readings(reg, ts, s), reg)
    drift = [a for a in opened(alerts, "sensor_fault") if a.evidence["fault"] == "drift"]
    assert any(a.asset == P_1 and a.opened_at > start * NS for a in drift)
    assert [a for a in opened(alerts, "leak") if a.opened_at > start * NS] == []


def test_same_alerts_whatever_the_batch_size() -> None:
    reg = StreamRegistry()
    days = 17
    ts = T0 + np.arange(0, days * 86_400, 60)
    ts, s = dma_series(days, seed=11, extra=np.where(ts >= T0 + 14.2 * 86_400, 2.5, 0.0))
    s[P_IN][500:700] = s[P_IN][500]
    batch = readings(reg, ts, s)
    results = []
    for rows in (len(batch), 997, 20_000):
        alerts, det = run(batch, reg, rows=rows)
        results.append(({k: a.to_dict() for k, a in final(alerts).items()}, det.counters.tolist()))
    assert results[0][0], "expected some alerts to compare"
    assert results[0] == results[1] == results[2]


def test_warm_up_compiles_the_kernels() -> None:
    from gateway.analytics import water  # noqa: PLC0415

    water.warm_up()  # raises if a kernel does not compile for the pinned dtypes


_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_water import DMA, P_IN, P_1, dma_series, final, readings, run
from gateway.streams import StreamRegistry
reg = StreamRegistry()
ts, s = dma_series(6, seed=12)
s[P_IN][1000:1200] = s[P_IN][1000]
s[P_1][2000] += 25.0
alerts, det = run(readings(reg, ts, s), reg, rows=5000)
out = sorted((a.id, a.state.value, a.opened_at, a.cleared_at) for a in final(alerts).values())
print(json.dumps([out, det.counters.tolist()]))
"""


def test_kernels_give_the_same_alerts_without_jit() -> None:
    """The kernels as plain Python (NUMBA_DISABLE_JIT=1, for coverage) agree with numba."""
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    here = Path(__file__).resolve().parent
    script = _SCRIPT.format(tests=str(here))
    outs = []
    for jit_off in ("0", "1"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": jit_off}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
            cwd=here.parents[1], timeout=240,
        )  # fmt: skip
        outs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outs[0][0], "expected alerts to compare"
    assert outs[0] == outs[1]
