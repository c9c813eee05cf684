"""Each kernel on a small hand-computed array, and split batches against one batch.

Also run under NUMBA_DISABLE_JIT=1 by test_kernels_nojit.py, so the pure-Python
path is covered line by line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.analytics import kernels as k
from gateway.batch import AggregateBatch

M = k.NS_PER_MIN
S = k.NS_PER_S


def _i64(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


def _i32(*v: int) -> np.ndarray:
    return np.array(v, np.int32)


def _f64(*v: float) -> np.ndarray:
    return np.array(v, np.float64)


def _run_aggregate(
    ts: np.ndarray, stream: np.ndarray, value: np.ndarray, n_streams: int, splits: list[int]
) -> tuple[AggregateBatch, np.ndarray]:
    si, sf = k.new_aggregate_state(n_streams)
    parts = []
    for lo, hi in zip([0, *splits], [*splits, len(ts)], strict=True):
        n = hi - lo
        o_ts = np.empty(n, np.int64)
        o_st = np.empty(n, np.int32)
        o_c = np.empty(n, np.int32)
        o_f = np.empty((n, 5), np.float64)
        m = k.aggregate(ts[lo:hi], stream[lo:hi], value[lo:hi], M, si, sf, o_ts, o_st, o_c, o_f)
        parts.append((o_ts[:m], o_st[:m], o_c[:m], o_f[:m]))
    o_ts = np.empty(n_streams, np.int64)
    o_st = np.empty(n_streams, np.int32)
    o_c = np.empty(n_streams, np.int32)
    o_f = np.empty((n_streams, 5), np.float64)
    m = k.aggregate_flush(int(np.iinfo(np.int64).max), M, si, sf, o_ts, o_st, o_c, o_f)
    parts.append((o_ts[:m], o_st[:m], o_c[:m], o_f[:m]))
    f = np.concatenate([p[3] for p in parts])
    batch = AggregateBatch(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        *(np.ascontiguousarray(f[:, j]) for j in range(5)),
    )
    return batch, si[:, 2].copy()


AGG_TS = _i64(0, 10 * S, 30 * S, 5 * S, M + 1, M + 2 * S, 3 * M, 2 * S, 3 * M + S)
AGG_ST = _i32(0, 0, 1, 0, 0, 1, 0, 0, 0)
AGG_V = _f64(1.0, 3.0, 10.0, 2.0, 5.0, np.nan, -1.0, 9.0, np.inf)


def test_aggregate_by_hand() -> None:
    batch, late = _run_aggregate(AGG_TS, AGG_ST, AGG_V, 2, [])
    # stream 0: minute 0 = {1, 3, 2}, minute 1 = {5}, minute 3 = {-1}; the 2 s sample
    # arrives after minute 3 opened: late. Stream 1: minute 0 = {10}; NaN skipped.
    rows = sorted(zip(batch.stream.tolist(), batch.ts.tolist(), batch.count.tolist(), strict=True))
    assert rows == [(0, 0, 3), (0, M, 1), (0, 3 * M, 1), (1, 0, 1)]
    first = int(np.flatnonzero((batch.stream == 0) & (batch.ts == 0))[0])
    assert batch.min[first] == 1.0
    assert batch.max[first] == 3.0
    assert batch.sum[first] == 6.0
    assert batch.mean[first] == 2.0
    assert batch.last[first] == 2.0
    assert late.tolist() == [1, 0]


@pytest.mark.parametrize("splits", [[1], [3, 4], [2, 5, 7], list(range(1, 9))])
def test_aggregate_split_matches_one_batch(splits: list[int]) -> None:
    whole, late_w = _run_aggregate(AGG_TS, AGG_ST, AGG_V, 2, [])
    parts, late_p = _run_aggregate(AGG_TS, AGG_ST, AGG_V, 2, splits)
    key_w = np.lexsort((whole.ts, whole.stream))
    key_p = np.lexsort((parts.ts, parts.stream))
    for a, b in zip(whole.columns(), parts.columns(), strict=True):
        np.testing.assert_array_equal(a[key_w], b[key_p])
    np.testing.assert_array_equal(late_w, late_p)


def test_aggregate_ignores_unknown_stream_and_flush_watermark() -> None:
    si, sf = k.new_aggregate_state(1)
    out = (np.empty(3, np.int64), np.empty(3, np.int32), np.empty(3, np.int32))
    o_f = np.empty((3, 5), np.float64)
    n = k.aggregate(_i64(0, 1, 2), _i32(0, 5, -1), _f64(1, 2, 3), M, si, sf, *out, o_f)
    assert n == 0
    assert k.aggregate_flush(M - 1, M, si, sf, *out, o_f) == 0  # minute 0 not over yet
    assert k.aggregate_flush(M, M, si, sf, *out, o_f) == 1
    assert out[2][0] == 1
    assert o_f[0, 4] == 1.0


def test_ewma_by_hand() -> None:
    state = k.new_ewma_state(1)
    mean = np.empty(4)
    var = np.empty(4)
    k.ewma(_i32(0, 0, 0, 0), _f64(2.0, 4.0, np.nan, 10.0), 0.5, state, mean, var)
    # x=2: first sample -> mean 2, var 0. x=4: a = max(0.5, 1/2) = 0.5, d = 2,
    # mean 3, var 0.5 * (0 + 0.5 * 4) = 1. NaN: skipped. x=10: predicted (3, 1),
    # d = 7, mean 6.5, var 0.5 * (1 + 0.5 * 49) = 12.75.
    assert math.isnan(mean[0])
    assert (mean[1], var[1]) == (2.0, 0.0)
    assert math.isnan(mean[2])
    assert (mean[3], var[3]) == (3.0, 1.0)
    assert state[0].tolist() == [6.5, 12.75, 3.0]


def test_ewma_split_matches_one_batch() -> None:
    rng = np.random.default_rng(1)
    st = rng.integers(0, 3, 200).astype(np.int32)
    x = rng.normal(size=200)
    x[::17] = np.nan
    outs = []
    for splits in ([], [1, 50, 51, 199]):
        state = k.new_ewma_state(3)
        m = np.empty(200)
        v = np.empty(200)
        for lo, hi in zip([0, *splits], [*splits, 200], strict=True):
            k.ewma(st[lo:hi], x[lo:hi], 0.05, state, m[lo:hi], v[lo:hi])
        outs.append((m, v, state))
    for a, b in zip(outs[0], outs[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_cusum_one_sided_by_hand() -> None:
    state = k.new_cusum_state(1, sides=1)
    x = _f64(1.0, 2.0, np.nan, 3.0, -10.0, 0.4)
    s = np.empty(6)
    alarm = np.empty(6, np.int8)
    k.cusum_one_sided(np.zeros(6, np.int32), x, 0.5, 4.0, state, s, alarm)
    # S: 0.5, 2.0, (NaN keeps 2.0), 4.5 > 4 -> alarm and reset, 0, 0.
    assert s.tolist() == [0.5, 2.0, 2.0, 4.5, 0.0, 0.0]
    assert alarm.tolist() == [0, 0, 0, 1, 0, 0]
    assert state[0] == 0.0


def test_cusum_two_sided_by_hand() -> None:
    state = k.new_cusum_state(1)
    x = _f64(1.0, -2.0, -3.0, 2.0, 5.0)
    p = np.empty(5)
    q = np.empty(5)
    alarm = np.empty(5, np.int8)
    k.cusum_two_sided(np.zeros(5, np.int32), x, 1.0, 3.0, state, p, q, alarm)
    # S+: 0, 0, 0, 1, 5 -> alarm +1. S-: 0, 1, 3 (not > 3), 0, 0.
    assert p.tolist() == [0.0, 0.0, 0.0, 1.0, 5.0]
    assert q.tolist() == [0.0, 1.0, 3.0, 0.0, 0.0]
    assert alarm.tolist() == [0, 0, 0, 0, 1]
    k.cusum_two_sided(np.zeros(1, np.int32), _f64(-5.0), 1.0, 3.0, state, p, q, alarm)
    assert (q[0], alarm[0]) == (4.0, -1)
    assert state[0].tolist() == [0.0, 0.0]


def test_cusum_split_matches_one_batch() -> None:
    rng = np.random.default_rng(2)
    st = rng.integers(0, 2, 300).astype(np.int32)
    x = rng.normal(0.3, 1.0, 300)
    res = []
    for splits in ([], [7, 8, 150]):
        state = k.new_cusum_state(2)
        p, q, a = np.empty(300), np.empty(300), np.empty(300, np.int8)
        for lo, hi in zip([0, *splits], [*splits, 300], strict=True):
            k.cusum_two_sided(st[lo:hi], x[lo:hi], 0.5, 4.0, state, p[lo:hi], q[lo:hi], a[lo:hi])
        res.append((p, q, a))
    for u, v in zip(*res, strict=True):
        np.testing.assert_array_equal(u, v)
    assert res[0][2].any()


def test_tow_bin_monday_and_offset() -> None:
    h = 3600 * S
    # 1970-01-05 00:00 UTC was a Monday.
    monday = 4 * 86_400 * S
    assert k.tow_bin(monday, 0, h, 168) == 0
    assert k.tow_bin(monday + 5 * h, 0, h, 168) == 5
    assert k.tow_bin(monday - 1, 0, h, 168) == 167
    # 23:00 UTC Sunday is 04:30 Monday in Kolkata.
    assert k.tow_bin(monday - h, 19_800 * S, h, 168) == 4


def test_tow_baseline_by_hand() -> None:
    state = k.new_tow_state(1, 2)
    week = k.NS_PER_WEEK
    n = 8
    ts = np.arange(n, dtype=np.int64) * week  # all in one bin (Thursday, bin 0 of 2)
    x = _f64(10, 12, 8, 10, 11, 10, 9, 10)
    med = np.empty(n)
    mad = np.empty(n)
    k.tow_baseline(ts, np.zeros(n, np.int32), x, 0, week // 2, 50.0, state, med, mad)
    assert np.isnan(med[:4]).all()
    # Seed phase (n <= 4): the median is the running mean (10, 11, 10, 10) and the MAD a
    # running mean of |x - median|: 2/2 = 1, then 1 + (3 - 1)/3 = 5/3, then
    # 5/3 + (0 - 5/3)/4 = 1.25.
    assert med[4] == pytest.approx(10.0)
    assert mad[4] == pytest.approx(1.25)
    # Sample 4 (x = 11, n = 5): scale = max(MAD 1.25, mean dev / 2) = 1.25, step 0.25:
    # median += min(1.85 * 0.25, 11 - 10) = 0.4625; |x - m| = 1 < MAD, so
    # MAD -= min(1.16 * 0.25, 1.25 - 1) = 0.25.
    assert med[5] == pytest.approx(10.4625)
    assert mad[5] == pytest.approx(1.0)
    assert state[0, 1, 2] == 0.0  # the other bin saw nothing


def test_tow_baseline_converges_and_splits() -> None:
    rng = np.random.default_rng(3)
    n = 6000
    ts = np.sort(rng.integers(0, 50 * k.NS_PER_WEEK, n)).astype(np.int64)
    st = rng.integers(0, 2, n).astype(np.int32)
    bin_ns = k.NS_PER_WEEK // 4
    x = np.where(st == 0, 100.0, -5.0) + rng.normal(0, 2.0, n)
    x[200::50] = 1e6  # once seeded, outliers barely move a median
    res = []
    for splits in ([], [1, 999, 3000]):
        state = k.new_tow_state(2, 4)
        med, mad = np.empty(n), np.empty(n)
        for lo, hi in zip([0, *splits], [*splits, n], strict=True):
            k.tow_baseline(
                ts[lo:hi], st[lo:hi], x[lo:hi], 0, bin_ns, 200.0, state, med[lo:hi], mad[lo:hi]
            )
        res.append((med, mad, state))
    for u, v in zip(*res, strict=True):
        np.testing.assert_array_equal(u, v)
    state = res[0][2]
    np.testing.assert_allclose(state[0, :, 0], 100.0, atol=0.6)
    np.testing.assert_allclose(state[1, :, 0], -5.0, atol=0.6)
    # MAD of N(0, 2) is 1.349; the 2% outliers push it up a little.
    np.testing.assert_allclose(state[:, :, 1], 1.35, atol=0.35)


def test_rate_of_change_by_hand() -> None:
    last_ts, last_v = k.new_rate_state(2)
    ts = _i64(0, 2 * S, 2 * S, S, 4 * S, 5 * S, 6 * S)
    st = _i32(0, 0, 0, 0, 1, 0, 0)
    x = _f64(1.0, 5.0, 7.0, 9.0, 3.0, np.nan, 3.0)
    out = np.empty(7)
    k.rate_of_change(ts, st, x, last_ts, last_v, out)
    # (5-1)/2 = 2; duplicate ts and earlier ts: NaN and ignored; stream 1 first: NaN;
    # NaN value: NaN; then (3-5)/(6-2) = -0.5.
    assert np.isnan(out[[0, 2, 3, 4, 5]]).all()
    assert out[1] == 2.0
    assert out[6] == -0.5
    assert last_ts.tolist() == [6 * S, 4 * S]


def test_warm_up_runs() -> None:
    k.warm_up()
