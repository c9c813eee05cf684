"""Numba kernels: pure functions over batch columns plus explicit state arrays.

Every kernel takes the columns of a batch (`ts` int64 ns UTC, `stream` int32,
`value` float64), the state arrays it owns (indexed by stream id, allocated by
the matching `new_*_state` function) and output arrays the caller allocated,
and does O(1) work per sample. State is updated in place, so calling a kernel
on a batch split anywhere gives exactly what one call on the whole batch gives.

    batch columns ──► kernel(columns, state, out) ──► out arrays
                          ▲        │
                          └────────┘  state carried to the next batch

Conventions shared by all kernels:

- Dtypes are pinned: ts int64, stream int32, value float64, state and outputs
  as documented per kernel. Pass anything else and numba compiles a new
  specialisation (slow) or refuses; `warm_up` compiles the pinned ones.
- A non-finite value (NaN, ±inf) is skipped: it never enters the state. Its
  output is NaN (or 0 for counts and alarms).
- A stream id outside the state arrays is skipped the same way, never an
  index error.
- Outputs that predict (EWMA, time-of-week baseline) are the estimate *before*
  the sample is folded in, so a sample is judged only on what came before it.

`numba` caches compiled kernels on disk (`cache=True`). When the package folder
is not writable (an installed wheel on a read-only root), `NUMBA_CACHE_DIR` is
pointed at `$XDG_CACHE_HOME/gateway/numba` (or `~/.cache/...`, or the temp dir).
"""

# Kernels take columns, state and outputs positionally: numba has no keyword-only arguments.
# ruff: noqa: PLR0917

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast


def _ensure_cache_dir() -> None:
    """Point NUMBA_CACHE_DIR somewhere writable unless the user already did."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    if os.access(Path(__file__).resolve().parent, os.W_OK):
        return  # numba writes next to the source, in __pycache__
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    for root in (Path(base), Path(tempfile.gettempdir())):
        target = root / "gateway" / "numba"
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(target, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(target)
            return


_ensure_cache_dir()

import numba  # noqa: E402 - NUMBA_CACHE_DIR must be set before numba reads its config
import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

F = TypeVar("F", bound=Callable[..., Any])

NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_WEEK = 7 * 86_400 * NS_PER_S
# 1970-01-01 was a Thursday; shifting by 3 days makes bin 0 start on Monday 00:00.
_MONDAY_SHIFT_NS = 3 * 86_400 * NS_PER_S
NO_TS = np.iinfo(np.int64).min  # "no timestamp yet" in int64 state

I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
I8 = NDArray[np.int8]
F64 = NDArray[np.float64]


def _jit(fn: F) -> F:
    """`numba.njit(cache=True, nogil=True)`, typed for mypy."""
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


# --------------------------------------------------------------------------------------------
# Per-interval aggregates


def new_aggregate_state(n_streams: int) -> tuple[I64, F64]:
    """State for `aggregate`.

    `si` int64[n_streams, 3]: (bucket start ns or NO_TS, good-sample count, late samples dropped).
    `sf` float64[n_streams, 4]: (min, max, sum, last) of the open bucket.
    """
    si = np.zeros((n_streams, 3), np.int64)
    si[:, 0] = NO_TS
    sf = np.zeros((n_streams, 4), np.float64)
    return si, sf


@_jit
def _aggregate_emit(
    s: int,
    si: I64,
    sf: F64,
    k: int,
    out_ts: I64,
    out_stream: I32,
    out_count: I32,
    out_f: F64,
) -> int:
    cnt = si[s, 1]
    out_ts[k] = si[s, 0]
    out_stream[k] = s
    out_count[k] = cnt
    out_f[k, 0] = sf[s, 0]
    out_f[k, 1] = sf[s, 1]
    out_f[k, 2] = sf[s, 2] / cnt
    out_f[k, 3] = sf[s, 2]
    out_f[k, 4] = sf[s, 3]
    si[s, 0] = NO_TS
    si[s, 1] = 0
    return k + 1


@_jit
def aggregate(
    ts: I64,
    stream: I32,
    value: F64,
    interval_ns: int,
    si: I64,
    sf: F64,
    out_ts: I64,
    out_stream: I32,
    out_count: I32,
    out_f: F64,
) -> int:
    """Per-stream aggregates over fixed intervals aligned to the epoch (1 min: 60e9).

    A bucket is emitted when the first sample of a later interval arrives for its
    stream, so the outputs are closed buckets only; `aggregate_flush` closes the rest.
    A sample older than the open bucket is late: it is dropped and counted in
    `si[s, 2]`. Non-finite values are skipped (a bucket with none is never opened).

    Outputs (capacity len(ts) is always enough; returns the number written):
    `out_ts` int64 bucket start, `out_stream` int32, `out_count` int32, and
    `out_f` float64[n, 5] = (min, max, mean, sum, last), the columns of
    `gateway.batch.AggregateBatch`.
    """
    k = 0
    n_streams = si.shape[0]
    for i in range(ts.shape[0]):
        s = stream[i]
        x = value[i]
        if s < 0 or s >= n_streams or not np.isfinite(x):
            continue
        start = ts[i] - ts[i] % interval_ns  # floor, also for ts before the epoch
        open_start = si[s, 0]
        if open_start != NO_TS and start < open_start:
            si[s, 2] += 1
            continue
        if open_start != NO_TS and start > open_start:
            k = _aggregate_emit(s, si, sf, k, out_ts, out_stream, out_count, out_f)
        if si[s, 1] == 0:
            si[s, 0] = start
            si[s, 1] = 1
            sf[s, 0] = x
            sf[s, 1] = x
            sf[s, 2] = x
            sf[s, 3] = x
        else:
            si[s, 1] += 1
            sf[s, 0] = min(sf[s, 0], x)
            sf[s, 1] = max(sf[s, 1], x)
            sf[s, 2] += x
            sf[s, 3] = x
    return k


@_jit
def aggregate_flush(
    before_ns: int,
    interval_ns: int,
    si: I64,
    sf: F64,
    out_ts: I64,
    out_stream: I32,
    out_count: I32,
    out_f: F64,
) -> int:
    """Emit every open bucket whose interval ends at or before `before_ns` (a
    watermark; pass int64 max to close all). Outputs need capacity n_streams."""
    k = 0
    for s in range(si.shape[0]):
        if si[s, 1] > 0 and si[s, 0] + interval_ns <= before_ns:
            k = _aggregate_emit(s, si, sf, k, out_ts, out_stream, out_count, out_f)
    return k


# --------------------------------------------------------------------------------------------
# EWMA mean and variance


def new_ewma_state(n_streams: int) -> F64:
    """State for `ewma`: float64[n_streams, 3] = (mean, variance, samples seen)."""
    return np.zeros((n_streams, 3), np.float64)


@_jit
def ewma_step(state: F64, s: int, x: float, alpha: float) -> None:
    """Fold one finite sample into row `s` of an EWMA state.

    The effective weight is max(alpha, 1/n), so the first samples give the plain
    running mean and variance instead of a start-up bias toward the first value.
    """
    n = state[s, 2] + 1.0
    state[s, 2] = n
    if n == 1.0:
        state[s, 0] = x
        state[s, 1] = 0.0
        return
    a = max(alpha, 1.0 / n)
    d = x - state[s, 0]
    state[s, 0] += a * d
    state[s, 1] = (1.0 - a) * (state[s, 1] + a * d * d)


@_jit
def ewma(stream: I32, value: F64, alpha: float, state: F64, out_mean: F64, out_var: F64) -> None:
    """Exponentially weighted mean and variance per stream (weight `alpha` in (0, 1]).

    `out_mean[i]`, `out_var[i]` are the estimates *before* sample i (NaN before a
    stream's first sample and for skipped samples), so (x - mean) / sqrt(var) is a
    causal z-score. State layout: see `new_ewma_state`.
    """
    n_streams = state.shape[0]
    for i in range(value.shape[0]):
        s = stream[i]
        x = value[i]
        if s < 0 or s >= n_streams or not np.isfinite(x):
            out_mean[i] = np.nan
            out_var[i] = np.nan
            continue
        if state[s, 2] > 0:
            out_mean[i] = state[s, 0]
            out_var[i] = state[s, 1]
        else:
            out_mean[i] = np.nan
            out_var[i] = np.nan
        ewma_step(state, s, x, alpha)


# --------------------------------------------------------------------------------------------
# CUSUM


def new_cusum_state(n_streams: int, sides: int = 2) -> F64:
    """State for CUSUM: float64[n_streams] for `cusum_one_sided`, float64[n_streams, 2]
    = (upper sum S+, lower sum S-) for `cusum_two_sided`."""
    if sides == 1:
        return np.zeros(n_streams, np.float64)
    return np.zeros((n_streams, 2), np.float64)


@_jit
def cusum_one_sided(
    stream: I32, x: F64, k: float, h: float, state: F64, out_s: F64, out_alarm: I8
) -> None:
    """Upper CUSUM per stream: S = max(0, S + x - k); alarm (1) when S > h, then S = 0.

    `x` is a residual in the units `k` (allowance) and `h` (decision interval) are in,
    usually a z-score. Test a downward shift by passing -x. `out_s[i]` is S after
    sample i (before any reset), `out_alarm[i]` 1 or 0. State: float64[n_streams].
    """
    n_streams = state.shape[0]
    for i in range(x.shape[0]):
        s = stream[i]
        v = x[i]
        out_alarm[i] = 0
        if s < 0 or s >= n_streams:
            out_s[i] = np.nan
            continue
        if not np.isfinite(v):
            out_s[i] = state[s]
            continue
        c = max(0.0, state[s] + v - k)
        out_s[i] = c
        if c > h:
            out_alarm[i] = 1
            c = 0.0
        state[s] = c


@_jit
def cusum_two_sided(
    stream: I32,
    x: F64,
    k: float,
    h: float,
    state: F64,
    out_pos: F64,
    out_neg: F64,
    out_alarm: I8,
) -> None:
    """Two-sided CUSUM per stream: S+ = max(0, S+ + x - k), S- = max(0, S- - x - k).

    `out_alarm[i]` is +1 when S+ > h, -1 when S- > h (the larger wins if both),
    else 0; the side that alarmed restarts at 0. `out_pos`, `out_neg` hold the sums
    after sample i, before any reset. State: float64[n_streams, 2] = (S+, S-).
    """
    n_streams = state.shape[0]
    for i in range(x.shape[0]):
        s = stream[i]
        v = x[i]
        out_alarm[i] = 0
        if s < 0 or s >= n_streams:
            out_pos[i] = np.nan
            out_neg[i] = np.nan
            continue
        if not np.isfinite(v):
            out_pos[i] = state[s, 0]
            out_neg[i] = state[s, 1]
            continue
        p = max(0.0, state[s, 0] + v - k)
        q = max(0.0, state[s, 1] - v - k)
        out_pos[i] = p
        out_neg[i] = q
        if p > h or q > h:
            if p >= q:
                out_alarm[i] = 1
                p = 0.0
            else:
                out_alarm[i] = -1
                q = 0.0
        state[s, 0] = p
        state[s, 1] = q


# --------------------------------------------------------------------------------------------
# Robust time-of-week baseline: streaming median and MAD per (stream, bin)


def new_tow_state(n_streams: int, n_bins: int = 168) -> F64:
    """State for `tow_baseline`: float64[n_streams, n_bins, 4] =
    (median, MAD, samples seen (capped), mean absolute deviation).
    Bin b covers [b, b+1) * bin_ns from Monday 00:00 local; use n_bins * bin_ns = 1 week
    (168 hourly bins, 672 of 15 min, 2016 of 5 min)."""
    return np.zeros((n_streams, n_bins, 4), np.float64)


@_jit
def tow_bin(ts: int, offset_ns: int, bin_ns: int, n_bins: int) -> int:
    """Bin of a UTC timestamp in a week of `n_bins` bins, local time = UTC + offset_ns."""
    t = (ts + offset_ns + _MONDAY_SHIFT_NS) % NS_PER_WEEK  # Python-style mod: >= 0
    return int((t // bin_ns) % n_bins)


@_jit
def robust_step(state: F64, s: int, b: int, x: float, max_n: float) -> None:
    """Fold one finite sample into the (median, MAD) estimate at state[s, b].

    Stochastic-approximation quantiles: the median moves by 1.85*scale/n toward x and
    the MAD by 1.16*scale/n toward |x - median| (the steps that are optimal for a
    normal), with n capped at `max_n` (at least 5) so the baseline keeps tracking slow change.
    `scale` is the MAD, floored by half a mean absolute deviation (each deviation
    clipped to 4x the scale, so outliers do not inflate it) so that a baseline
    that saw a constant still moves when the data starts to vary. The first 4
    samples seed both with running means.
    """
    if state[s, b, 2] == 0.0:
        state[s, b, 0] = x
        state[s, b, 1] = 0.0
        state[s, b, 2] = 1.0
        state[s, b, 3] = 0.0
        return
    n = min(state[s, b, 2] + 1.0, max(max_n, 5.0))
    state[s, b, 2] = n
    m = state[s, b, 0]
    dev = abs(x - m)
    mean_dev = state[s, b, 3]
    # Clipped to 4x the current scale so outliers cannot inflate it; unclipped while
    # it is 0, so the first variation after a constant stretch gets through.
    clip = 4.0 * max(mean_dev, state[s, b, 1]) if mean_dev > 0.0 else dev
    state[s, b, 3] = mean_dev + (min(dev, clip) - mean_dev) / min(n, 32.0)
    if n <= 4.0:
        state[s, b, 0] = m + (x - m) / n
        state[s, b, 1] = state[s, b, 3]
        return
    scale = max(state[s, b, 1], 0.5 * state[s, b, 3], 1e-12)
    step = scale / n
    if x > m:
        state[s, b, 0] = m + min(1.85 * step, x - m)
    elif x < m:
        state[s, b, 0] = m - min(1.85 * step, m - x)
    d = state[s, b, 1]
    if dev > d:
        state[s, b, 1] = d + min(1.16 * step, dev - d)
    elif dev < d:
        state[s, b, 1] = d - min(1.16 * step, d - dev)


@_jit
def tow_baseline(
    ts: I64,
    stream: I32,
    value: F64,
    offset_ns: int,
    bin_ns: int,
    max_n: float,
    state: F64,
    out_median: F64,
    out_mad: F64,
) -> None:
    """Median and MAD of each stream per time-of-week bin, learned as data arrives.

    `out_median[i]`, `out_mad[i]` are the bin's estimates before sample i (NaN until
    the bin has seen 4 samples, and for skipped samples). `offset_ns` is the local
    UTC offset (Asia/Kolkata: 5.5 h), `max_n` the memory in samples per bin (e.g. 8
    weeks of one sample per bin per week: 8). State: see `new_tow_state`.
    """
    n_streams = state.shape[0]
    n_bins = state.shape[1]
    for i in range(value.shape[0]):
        s = stream[i]
        x = value[i]
        out_median[i] = np.nan
        out_mad[i] = np.nan
        if s < 0 or s >= n_streams or not np.isfinite(x):
            continue
        b = tow_bin(ts[i], offset_ns, bin_ns, n_bins)
        if state[s, b, 2] >= 4.0:
            out_median[i] = state[s, b, 0]
            out_mad[i] = state[s, b, 1]
        robust_step(state, s, b, x, max_n)


# --------------------------------------------------------------------------------------------
# Rate of change


def new_rate_state(n_streams: int) -> tuple[I64, F64]:
    """State for `rate_of_change`: int64[n_streams] last ts (NO_TS before the first
    sample) and float64[n_streams] last value."""
    return np.full(n_streams, NO_TS, np.int64), np.zeros(n_streams, np.float64)


@_jit
def rate_of_change(
    ts: I64, stream: I32, value: F64, last_ts: I64, last_value: F64, out_rate: F64
) -> None:
    """(x - previous x) / seconds since the previous sample of the same stream.

    NaN for a stream's first sample, for non-finite values and for a sample not
    after the previous one (duplicate or out of order), which leaves the state as is.
    """
    n_streams = last_ts.shape[0]
    for i in range(value.shape[0]):
        s = stream[i]
        x = value[i]
        out_rate[i] = np.nan
        if s < 0 or s >= n_streams or not np.isfinite(x):
            continue
        t0 = last_ts[s]
        if t0 != NO_TS:
            if ts[i] <= t0:
                continue
            out_rate[i] = (x - last_value[s]) * NS_PER_S / (ts[i] - t0)
        last_ts[s] = ts[i]
        last_value[s] = x


# --------------------------------------------------------------------------------------------


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for the pinned dtypes.

    Call once at start so the first real batch does not pay for compilation.
    """
    ts = np.array([0, NS_PER_MIN, 2 * NS_PER_MIN], np.int64)
    stream = np.zeros(3, np.int32)
    value = np.array([1.0, 2.0, np.nan], np.float64)
    n = len(ts)
    out_ts = np.empty(n, np.int64)
    out_stream = np.empty(n, np.int32)
    out_count = np.empty(n, np.int32)
    out_f = np.empty((n, 5), np.float64)
    si, sf = new_aggregate_state(1)
    aggregate(ts, stream, value, NS_PER_MIN, si, sf, out_ts, out_stream, out_count, out_f)
    end = int(np.iinfo(np.int64).max)
    aggregate_flush(end, NS_PER_MIN, si, sf, out_ts, out_stream, out_count, out_f)
    a = np.empty(n, np.float64)
    b = np.empty(n, np.float64)
    ewma(stream, value, 0.1, new_ewma_state(1), a, b)
    alarm = np.empty(n, np.int8)
    cusum_one_sided(stream, value, 0.5, 5.0, new_cusum_state(1, 1), a, alarm)
    cusum_two_sided(stream, value, 0.5, 5.0, new_cusum_state(1, 2), a, b, alarm)
    tow_baseline(ts, stream, value, 0, 3600 * NS_PER_S, 8.0, new_tow_state(1), a, b)
    last_ts, last_value = new_rate_state(1)
    rate_of_change(ts, stream, value, last_ts, last_value, a)
