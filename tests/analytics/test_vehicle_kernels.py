"""The vehicle kernels on small hand-computed arrays."""

from __future__ import annotations

import numpy as np

from gateway.analytics import vehicle_kernels as k
from gateway.analytics.vehicle_state import Condition

S = 1_000_000_000


def run(
    cond: Condition,
    ts_s: list[int],
    *,
    on: list[bool],
    off: list[bool],
    hold_s: float = 0,
    clear_s: float = 0,
) -> list[tuple[int, bool, int, float]]:
    n = len(ts_s)
    cond.ensure(4)
    tr = cond.run(
        np.zeros(n, np.int32),
        np.asarray(ts_s, np.int64) * S,
        on=np.asarray(on),
        off=np.asarray(off),
        badness=np.arange(n, dtype=np.float64),
        hold_on_ns=np.full(n, round(hold_s * S), np.int64),
        hold_off_ns=np.full(n, round(clear_s * S), np.int64),
    )
    return [(row, opened, since // S, peak) for row, opened, since, peak in tr]


def test_debounce_hold_band_and_clear() -> None:
    cond = Condition(max_gap_s=100)
    t, f = True, False
    got = run(
        cond,
        [0, 5, 10, 15, 20, 25, 30, 35, 40, 45],
        on=[t, t, f, t, t, t, f, f, f, f],
        off=[f, f, t, f, f, f, f, t, t, t],
        hold_s=10,
        clear_s=5,
    )
    # run 0-5 broken at 10; run from 15 reaches 10 s at 25; band at 30 breaks nothing
    # while off has not started; off from 35 holds 5 s at 40. The peak is the worst
    # badness (here the row number) seen while open.
    assert got == [(5, True, 15, 5.0), (8, False, 15, 8.0)]


def test_debounce_counts_skips_and_gaps() -> None:
    cond = Condition(min_on=3, min_off=2, max_gap_s=30)
    t, f = True, False
    # 3 on-samples needed; the duplicate time 10 is skipped; the 50 s gap restarts the run
    ts = [0, 10, 10, 60, 70, 80, 90, 100]
    got = run(cond, ts, on=[t, t, t, t, t, t, f, f], off=[f] * 6 + [t, t])
    assert got == [(5, True, 60, 5.0), (7, False, 60, 7.0)]
    # time going backwards is skipped too
    assert run(cond, [50], on=[True], off=[False]) == []


def test_track_fixes_jump_and_reference() -> None:
    lat = np.asarray([18.5, 18.5, 18.6, 18.5, 18.5])  # the third is 11 km away
    lon = np.full(5, 73.8)
    lat[3] += 100 / 111_195  # 100 m north of the start, 10 s after it
    lat[4] += 200 / 111_195
    ts = np.asarray([0, 5, 6, 10, 15], np.int64) * S
    n = 5
    one = np.ones(1)
    state = [
        np.full(1, k.NEVER), one * np.nan, one * np.nan, one * np.nan,
        np.full(1, k.NEVER), one * np.nan, one * np.nan, np.zeros(1, np.int32),
    ]  # fmt: skip
    status = np.empty(n, np.int8)
    implied, jump_m, v_used, accel = (np.empty(n) for _ in range(4))
    k.track_fixes(
        np.zeros(n, np.int32), ts, lat, lon, np.full(n, np.nan, np.float32), np.ones(n, np.bool_),
        np.full(n, 120 / 3.6), np.full(n, 15 * S, np.int64), 3, *state,
        status, implied, jump_m, v_used, accel,
    )  # fmt: skip
    assert status.tolist() == [k.GOOD, k.GOOD, k.JUMP, k.GOOD, k.GOOD]
    assert jump_m[2] > 10_000
    # the fix after the jump is measured from the last good one: 100 m in 10 s
    np.testing.assert_allclose(v_used[1], 0.0, atol=1e-9)
    np.testing.assert_allclose(v_used[3], 20.0, rtol=1e-3)  # 100 m in 5 s since t=5
    np.testing.assert_allclose(v_used[4], 20.0, rtol=1e-3)
    np.testing.assert_allclose(accel[3], 4.0, rtol=1e-3)  # 0 to 20 m/s over 5 s
    assert np.isnan(accel[2])
