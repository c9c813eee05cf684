"""Numba kernels for the vehicle rules: columns in, per-vehicle state arrays carried.

Each kernel walks one batch in time order and keeps its state in arrays indexed
by the interned vehicle id, so the work is O(1) per sample and the same whether
a stream arrives in one batch or in many. The rules build the columns (with the
thresholds already applied, vectorised), the kernels do the sequential part.

    fixes ──track_fixes──► status (good / jump / skipped), speed, accel
    a, b  ──asof_pair────► each row gets the latest a and b of its vehicle
    on/off ──debounce────► opened / cleared transitions, with start time and peak

Conventions: `NEVER` (int64 min) marks an empty time slot; a vehicle id outside
the state arrays, a non-finite value or a time at or before the state's last
one (out of order, duplicate) is skipped, never an error.
"""

# Kernels take columns, state and outputs positionally: numba has no keyword-only arguments.
# ruff: noqa: PLR0917

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import kernels as _kernels

NEVER = np.iinfo(np.int64).min
SKIPPED, NONE, OPENED, CLEARED = -1, 0, 1, 2  # debounce outputs
GOOD, JUMP, REANCHORED = 0, 1, 2  # track_fixes status; SKIPPED as above
_R = 6_371_008.8


# through kernels, which points NUMBA_CACHE_DIR somewhere writable before numba loads
numba = _kernels.numba  # type: ignore[attr-defined]

F = TypeVar("F", bound=Callable[..., Any])


def _jit(fn: F) -> F:
    return cast(F, numba.njit(cache=True, nogil=True)(fn))


@_jit
def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * _R * math.asin(math.sqrt(min(1.0, max(0.0, a))))


@_jit
def track_fixes(
    vehicle: NDArray[np.int32],
    ts: NDArray[np.int64],
    lat: NDArray[np.float64],
    lon: NDArray[np.float64],
    speed: NDArray[np.float32],
    usable: NDArray[np.bool_],
    max_speed_mps: NDArray[np.float64],
    max_accel_dt_ns: NDArray[np.int64],
    reanchor_after: int,
    ref_ts: NDArray[np.int64],
    ref_lat: NDArray[np.float64],
    ref_lon: NDArray[np.float64],
    ref_v: NDArray[np.float64],
    cand_ts: NDArray[np.int64],
    cand_lat: NDArray[np.float64],
    cand_lon: NDArray[np.float64],
    cand_n: NDArray[np.int32],
    status: NDArray[np.int8],
    implied: NDArray[np.float64],
    jump_m: NDArray[np.float64],
    v_used: NDArray[np.float64],
    accel: NDArray[np.float64],
) -> None:
    """Judge each fix against the vehicle's last good one (the reference).

    A fix implying more than `max_speed_mps` from the reference is a JUMP: it is
    not made the reference, so it cannot poison the next speed or acceleration.
    `reanchor_after` consecutive jumps that agree with each other mean the
    reference itself was wrong (or the unit was carried): the last of them
    becomes the reference (REANCHORED). Speed is the reported one, else the one
    implied from the reference; accel is (speed - reference speed) / dt when dt
    is at most `max_accel_dt_ns`.
    """
    n_state = len(ref_ts)
    for i in range(len(ts)):
        v = vehicle[i]
        implied[i] = np.nan
        jump_m[i] = np.nan
        v_used[i] = np.nan
        accel[i] = np.nan
        if v < 0 or v >= n_state or not usable[i]:
            status[i] = SKIPPED
            continue
        t = ts[i]
        reported = float(speed[i])
        if ref_ts[v] == NEVER:
            ref_ts[v] = t
            ref_lat[v] = lat[i]
            ref_lon[v] = lon[i]
            ref_v[v] = reported
            v_used[i] = reported
            status[i] = GOOD
            continue
        if t <= ref_ts[v] or (cand_n[v] > 0 and t <= cand_ts[v]):
            status[i] = SKIPPED  # out of order or a duplicate time: causal rules judge in order
            continue
        dt = (t - ref_ts[v]) / 1e9
        d = _haversine(ref_lat[v], ref_lon[v], lat[i], lon[i])
        imp = d / dt
        implied[i] = imp
        if imp > max_speed_mps[i]:
            jump_m[i] = d
            agrees = False
            if cand_n[v] > 0:
                cdt = (t - cand_ts[v]) / 1e9
                agrees = (
                    _haversine(cand_lat[v], cand_lon[v], lat[i], lon[i]) / cdt <= max_speed_mps[i]
                )
            cand_n[v] = cand_n[v] + 1 if agrees else 1
            cand_ts[v] = t
            cand_lat[v] = lat[i]
            cand_lon[v] = lon[i]
            if cand_n[v] >= reanchor_after:
                status[i] = REANCHORED
                ref_ts[v] = t
                ref_lat[v] = lat[i]
                ref_lon[v] = lon[i]
                ref_v[v] = reported  # no acceleration across the re-anchoring
                v_used[i] = reported
                cand_n[v] = 0
            else:
                status[i] = JUMP
            continue
        cand_n[v] = 0
        vel = reported if math.isfinite(reported) else imp
        if math.isfinite(ref_v[v]) and t - ref_ts[v] <= max_accel_dt_ns[i]:
            accel[i] = (vel - ref_v[v]) / dt
        v_used[i] = vel
        status[i] = GOOD
        ref_ts[v] = t
        ref_lat[v] = lat[i]
        ref_lon[v] = lon[i]
        ref_v[v] = vel


@_jit
def speed_accel(
    vehicle: NDArray[np.int32],
    ts: NDArray[np.int64],
    speed_mps: NDArray[np.float64],
    max_dt_ns: NDArray[np.int64],
    last_ts: NDArray[np.int64],
    last_v: NDArray[np.float64],
    accel: NDArray[np.float64],
) -> None:
    """Acceleration between consecutive speed samples of a vehicle (a CAN speed stream)."""
    n_state = len(last_ts)
    for i in range(len(ts)):
        v = vehicle[i]
        accel[i] = np.nan
        if v < 0 or v >= n_state or not math.isfinite(speed_mps[i]):
            continue
        t = ts[i]
        if t <= last_ts[v]:
            continue
        if last_ts[v] != NEVER and t - last_ts[v] <= max_dt_ns[i]:
            accel[i] = (speed_mps[i] - last_v[v]) / ((t - last_ts[v]) / 1e9)
        last_ts[v] = t
        last_v[v] = speed_mps[i]


@_jit
def asof_pair(
    vehicle: NDArray[np.int32],
    ts: NDArray[np.int64],
    which: NDArray[np.int8],
    value: NDArray[np.float64],
    max_age_ns: int,
    last_a: NDArray[np.float64],
    last_a_ts: NDArray[np.int64],
    last_b: NDArray[np.float64],
    last_b_ts: NDArray[np.int64],
    out_a: NDArray[np.float64],
    out_b: NDArray[np.float64],
) -> None:
    """Join two signals of a vehicle as of each row: a row (which 0 = a, 1 = b)
    updates its signal, then gets the latest a and b no older than `max_age_ns`
    (else NaN). Rows must come in time order; an older sample never overwrites."""
    n_state = len(last_a)
    for i in range(len(ts)):
        v = vehicle[i]
        out_a[i] = np.nan
        out_b[i] = np.nan
        if v < 0 or v >= n_state:
            continue
        t = ts[i]
        if math.isfinite(value[i]):
            if which[i] == 0 and t > last_a_ts[v]:
                last_a[v] = value[i]
                last_a_ts[v] = t
            elif which[i] == 1 and t > last_b_ts[v]:
                last_b[v] = value[i]
                last_b_ts[v] = t
        if last_a_ts[v] != NEVER and t - last_a_ts[v] <= max_age_ns:
            out_a[i] = last_a[v]
        if last_b_ts[v] != NEVER and t - last_b_ts[v] <= max_age_ns:
            out_b[i] = last_b[v]


@_jit
def debounce(
    vehicle: NDArray[np.int32],
    ts: NDArray[np.int64],
    on: NDArray[np.bool_],
    off: NDArray[np.bool_],
    badness: NDArray[np.float64],
    hold_on_ns: NDArray[np.int64],
    hold_off_ns: NDArray[np.int64],
    min_on: int,
    min_off: int,
    max_gap_ns: int,
    active: NDArray[np.bool_],
    last_ts: NDArray[np.int64],
    on_since: NDArray[np.int64],
    on_n: NDArray[np.int32],
    off_since: NDArray[np.int64],
    off_n: NDArray[np.int32],
    peak: NDArray[np.float64],
    out: NDArray[np.int8],
    since: NDArray[np.int64],
    peak_out: NDArray[np.float64],
) -> None:
    """A condition with hysteresis and minimum durations, per vehicle.

    Inactive: a run of `on` samples lasting at least hold_on (from its first
    sample) and `min_on` samples long opens it. Active: a run of `off` samples
    lasting hold_off and `min_off` samples clears it. A sample that is neither
    (the hysteresis band) breaks the run in progress. A silence longer than
    `max_gap_ns` restarts a run, since nothing says the condition held through
    it. `badness` (larger is worse) is tracked as the peak while active.
    Outputs: OPENED / CLEARED / NONE / SKIPPED, the run's start time, the peak.
    """
    n_state = len(active)
    for i in range(len(ts)):
        v = vehicle[i]
        since[i] = NEVER
        peak_out[i] = np.nan
        if v < 0 or v >= n_state or ts[i] <= last_ts[v]:
            out[i] = SKIPPED
            continue
        t = ts[i]
        gap = last_ts[v] != NEVER and t - last_ts[v] > max_gap_ns
        last_ts[v] = t
        out[i] = NONE
        if not active[v]:
            if not on[i]:
                on_n[v] = 0
                continue
            if on_n[v] == 0 or gap:
                on_since[v] = t
                on_n[v] = 0
            on_n[v] += 1
            if t - on_since[v] >= hold_on_ns[i] and on_n[v] >= min_on:
                active[v] = True
                off_n[v] = 0
                peak[v] = badness[i]
                out[i] = OPENED
                since[i] = on_since[v]
                peak_out[i] = badness[i]
            continue
        if math.isfinite(badness[i]) and not badness[i] <= peak[v]:
            peak[v] = badness[i]
        if not off[i]:
            off_n[v] = 0
            continue
        if off_n[v] == 0 or gap:
            off_since[v] = t
            off_n[v] = 0
        off_n[v] += 1
        if t - off_since[v] >= hold_off_ns[i] and off_n[v] >= min_off:
            active[v] = False
            on_n[v] = 0
            out[i] = CLEARED
            since[i] = on_since[v]
            peak_out[i] = peak[v]


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for the pinned dtypes, so the
    first live batch does not pay for it."""
    i32, i64, f64 = np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1)
    b, i8, f32 = np.zeros(1, np.bool_), np.zeros(1, np.int8), np.zeros(1, np.float32)
    never = np.full(1, NEVER, np.int64)
    track_fixes(
        i32, i64, f64, f64, f32, b, f64, i64, 3,
        never.copy(), f64.copy(), f64.copy(), f64.copy(),
        never.copy(), f64.copy(), f64.copy(), i32.copy(),
        i8.copy(), f64.copy(), f64.copy(), f64.copy(), f64.copy(),
    )  # fmt: skip
    speed_accel(i32, i64, f64, i64, never.copy(), f64.copy(), f64.copy())
    asof_pair(
        i32,
        i64,
        i8,
        f64,
        1,
        f64.copy(),
        never.copy(),
        f64.copy(),
        never.copy(),
        f64.copy(),
        f64.copy(),
    )
    debounce(
        i32, i64, b, b, f64, i64, i64, 1, 1, 1,
        b.copy(), never.copy(), never.copy(), i32.copy(), never.copy(), i32.copy(), f64.copy(),
        i8.copy(), i64.copy(), f64.copy(),
    )  # fmt: skip
