"""Numba kernel that turns DMA readings into minute rows and sample events.

    readings --ingest_rows--> per-DMA minute rows (one mean per DMA stream)
                 +-> sample events (gap, stuck, spike, transient on/off)

The minute rows go on to `water_minutes.step_minutes`. The kernel is causal and
processes rows strictly in order, so the output depends on the rows and never on
where the batches were cut. It may stop early when its output buffers fill; it
returns where it stopped and the caller calls it again from there.

Gap rule (see `WaterSettings`): a DMA minute is judged once its data time
watermark (the newest reading of any of its streams) is `grace_minutes` past
the minute's end; a reading older than that is late and dropped. When the
watermark jumps more than `gap_reset_minutes`, short-term state (burst windows,
CUSUM sums, the open bin and night) is reset and the jump is reported as one gap
row; learned baselines are kept unless the gap is longer than
`baseline_max_age_minutes`, in which case they are forgotten and learned again.
A reading more than `clock_jump_minutes` behind the watermark is a clock jump
back: the DMA's timeline restarts there, with the same reset.

Cadence rule: each slot learns its reporting interval as the median of its last
`N_GAP` inter-arrival times (or takes it from the config). A dropout is a
silence longer than `max(dropout_s, dropout_intervals x interval)`. A slot that
reports less often than every `FILL_MIN_S` seconds (a 15-minute logger, an
hourly AMR group) has each reading spread over the minutes since its previous
one, if that gap is not a dropout: flows (interval means) as the reading's
value, pressures (samples) interpolated from the previous sample. The DMA's
minutes then wait `lag` more minutes, the ceiling of its slowest slot's
interval, so that every slot's reading is in before a minute is judged; the
rows carry that lag, and the alerts their data time plus it. Intervals slower
than `MAX_LAG` minutes cover only the last `MAX_LAG` minutes before a reading.
A silence longer than a dropout is not filled: those minutes stay empty, and
the gap rule above resets or forgets state as for any stream.
"""

# Kernels take columns, state and outputs positionally: numba has no keyword-only arguments.
# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np

from gateway.analytics import kernels as _kernels

# via kernels, which points NUMBA_CACHE_DIR somewhere writable before numba loads
njit = _kernels.numba.njit  # type: ignore[attr-defined]

NS_PER_MIN = 60_000_000_000
NS_PER_S = 1_000_000_000

# slot roles
INFLOW, OUTFLOW, PRESSURE, CONSUMPTION = 0, 1, 2, 3

# sample event types
EV_GAP, EV_STUCK_ON, EV_STUCK_OFF, EV_SPIKE, EV_TRANSIENT_ON, EV_TRANSIENT_OFF = 1, 2, 3, 4, 5, 6

# ingest parameters (float64 array, index names)
P_DROPOUT_NS, P_STUCK_NS, P_STUCK_EPS, P_SPIKE_K, P_SPIKE_FLOOR = 0, 1, 2, 3, 4
P_TR_MIN_HZ, P_TR_TAU_S, P_TR_K, P_TR_MIN_M, P_TR_QUIET_NS, P_TR_MAX_NS = 5, 6, 7, 8, 9, 10
P_GRACE_MIN, P_GAP_RESET_MIN, P_CLOCK_JUMP_MIN, P_DROPOUT_K = 11, 12, 13, 14
N_INGEST_PARAMS = 15
FILL_MIN_S = 90.0  # slots reporting less often than this are spread over their minutes
N_GAP = 9  # inter-arrival times in a slot's interval estimate

# per-slot int state
SI_LAST_TS, SI_CUR_MIN, SI_STUCK_SINCE, SI_STUCK_ON, SI_TR_ON, SI_TR_ONSET = 0, 1, 2, 3, 4, 5
SI_TR_QUIET, SI_TR_LASTQ, SI_N, SI_PREV_TS, SI_NGAP, SI_LAG = 6, 7, 8, 9, 10, 11
N_SI = 12
# per-slot float state; SF_GAP0 .. SF_GAP0 + N_GAP - 1 is the ring of inter-arrival times
SF_SUM, SF_CNT, SF_X1, SF_X2, SF_DIFF, SF_DT, SF_BASE, SF_VAR, SF_PEAK = 0, 1, 2, 3, 4, 5, 6, 7, 8
SF_TR_N, SF_IV, SF_IV_CFG, SF_GAP0 = 9, 10, 11, 12  # interval (learned, configured), ns
N_SF = SF_GAP0 + N_GAP
RING = 128  # closed minutes kept per slot, > grace_minutes + lag
MAX_LAG = 100  # minutes a DMA waits at most for its slowest slot
LAG_STRIDE = 1024  # a row's lag column: DMA lag + LAG_STRIDE x the lag of its flows alone
# per-DMA int state
DI_WATERMARK, DI_DONE_MIN, DI_LAG, DI_FLOW_LAG = 0, 1, 2, 3  # FLOW_LAG: inflow/outflow only
N_DI = 4
# counters
C_BAD, C_DISORDER, C_LATE, C_CLOCK_JUMP, C_GAP = 0, 1, 2, 3, 4
N_COUNTERS = 5


def new_ingest_state(
    n_slots: int,
    n_dma: int,
    interval_s: np.ndarray | None = None,
    slot_dma: np.ndarray | None = None,
    slot_role: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """State of `n_slots` slots in `n_dma` DMAs; `interval_s` per slot (in DMA
    `slot_dma`, of role `slot_role`) fixes its reporting interval, 0 = learn it."""
    si = np.zeros((n_slots, N_SI), np.int64)
    si[:, SI_CUR_MIN] = -1
    sf = np.zeros((n_slots, N_SF), np.float64)
    sf[:, SF_X1] = np.nan
    sf[:, SF_X2] = np.nan
    if interval_s is not None:
        sf[:, SF_IV_CFG] = np.asarray(interval_s, np.float64) * NS_PER_S
        sf[:, SF_IV] = sf[:, SF_IV_CFG]
        si[:, SI_LAG] = [_lag_of(v) for v in sf[:, SF_IV]]
    ring = np.full((n_slots, RING), np.nan)
    ring_min = np.full((n_slots, RING), -1, np.int64)
    di = np.zeros((n_dma, N_DI), np.int64)
    di[:, DI_DONE_MIN] = -1
    if slot_dma is not None and slot_role is not None:
        dmas = np.asarray(slot_dma, np.int64)
        np.maximum.at(di[:, DI_LAG], dmas, si[:, SI_LAG])
        flows = np.isin(slot_role, (INFLOW, OUTFLOW))
        np.maximum.at(di[:, DI_FLOW_LAG], dmas[flows], si[flows, SI_LAG])
    counters = np.zeros(N_COUNTERS, np.int64)
    return si, sf, ring, ring_min, di, counters


@njit(cache=True, nogil=True)
def _lag_of(iv):  # type: ignore[no-untyped-def]
    """Minutes a DMA waits for a slot reporting every `iv` ns."""
    if iv < FILL_MIN_S * NS_PER_S:
        return 0
    return min(np.int64(np.ceil(iv / NS_PER_MIN)), MAX_LAG)


@njit(cache=True, nogil=True)
def _learn_interval(s, gap, si, sf, di, d, dma_ptr, dma_slots, slot_role):  # type: ignore[no-untyped-def]
    """Push one inter-arrival time; re-estimate the slot's interval and the DMA's lags."""
    k = si[s, SI_NGAP]
    sf[s, SF_GAP0 + k % N_GAP] = gap
    si[s, SI_NGAP] = k + 1
    if sf[s, SF_IV_CFG] > 0 or (k >= N_GAP and k % 4 != 0):
        return
    n = min(k + 1, N_GAP)
    sf[s, SF_IV] = np.median(sf[s, SF_GAP0 : SF_GAP0 + n])
    lag = _lag_of(sf[s, SF_IV])
    if lag != si[s, SI_LAG]:
        si[s, SI_LAG] = lag
        worst = 0
        flows = 0
        for j in range(dma_ptr[d], dma_ptr[d + 1]):
            ss = dma_slots[j]
            worst = max(worst, si[ss, SI_LAG])
            if slot_role[ss] == INFLOW or slot_role[ss] == OUTFLOW:
                flows = max(flows, si[ss, SI_LAG])
        di[d, DI_LAG] = worst
        di[d, DI_FLOW_LAG] = flows


@njit(cache=True, nogil=True)
def _fill(s, t, x, last, done, role, si, sf, ring, ring_min):  # type: ignore[no-untyped-def]
    """Spread a slow slot's reading over the minutes since its previous one: flows
    (interval means) as x, pressures (samples) from the previous sample to x."""
    m1 = t // NS_PER_MIN
    m0 = max(last // NS_PER_MIN + 1, done + 1, m1 - MAX_LAG)
    x0 = sf[s, SF_X1]
    t0 = si[s, SI_PREV_TS]
    ramp = role == PRESSURE and t0 == last and np.isfinite(x0) and t > t0
    for m in range(m0, m1):
        v = x
        if ramp:
            w = ((m + 0.5) * NS_PER_MIN - t0) / (t - t0)
            v = x0 + min(max(w, 0.0), 1.0) * (x - x0)
        k = m % RING
        ring[s, k] = v
        ring_min[s, k] = m


@njit(cache=True, nogil=True)
def _close_minute(s, si, sf, ring, ring_min):  # type: ignore[no-untyped-def]
    m = si[s, SI_CUR_MIN]
    if m >= 0:
        k = m % RING
        ring[s, k] = sf[s, SF_SUM] / sf[s, SF_CNT] if sf[s, SF_CNT] > 0 else np.nan
        ring_min[s, k] = m
    sf[s, SF_SUM] = 0.0
    sf[s, SF_CNT] = 0.0
    si[s, SI_CUR_MIN] = -1


@njit(cache=True, nogil=True)
def _emit_minutes(  # type: ignore[no-untyped-def]
    d,
    upto,
    dma_ptr,
    dma_slots,
    si,
    sf,
    ring,
    ring_min,
    di,
    counters,
    out_dma,
    out_min,
    out_gap,
    out_lag,
    out_vals,
    n_out,
    gap_reset,
):
    """Judge DMA `d`'s minutes up to `upto` inclusive; returns the new n_out."""
    cap = out_min.shape[0]
    done = di[d, DI_DONE_MIN]
    if done >= 0 and upto - done > gap_reset:
        # a long silence: one gap row instead of days of empty minutes
        if n_out >= cap:
            return n_out
        out_dma[n_out] = d
        out_min[n_out] = upto
        out_gap[n_out] = 1
        out_lag[n_out] = 0
        out_vals[n_out, :] = np.nan
        n_out += 1
        counters[C_GAP] += 1
        for j in range(dma_ptr[d], dma_ptr[d + 1]):
            s = dma_slots[j]
            ring_min[s, :] = -1
            _close_minute(s, si, sf, ring, ring_min)
            ring_min[s, :] = -1
        di[d, DI_DONE_MIN] = upto
        return n_out
    if done < 0:
        done = upto - 1
        di[d, DI_DONE_MIN] = done
    m = done + 1
    while m <= upto:
        if n_out >= cap:
            return n_out
        out_dma[n_out] = d
        out_min[n_out] = m
        out_gap[n_out] = 0
        out_lag[n_out] = di[d, DI_LAG] + LAG_STRIDE * di[d, DI_FLOW_LAG]
        out_vals[n_out, :] = np.nan
        for j in range(dma_ptr[d], dma_ptr[d + 1]):
            s = dma_slots[j]
            if si[s, SI_CUR_MIN] == m:
                _close_minute(s, si, sf, ring, ring_min)
            k = m % RING
            if ring_min[s, k] == m:
                out_vals[n_out, j - dma_ptr[d]] = ring[s, k]
        n_out += 1
        di[d, DI_DONE_MIN] = m
        m += 1
    return n_out


@njit(cache=True, nogil=True)
def ingest_rows(  # type: ignore[no-untyped-def]
    ts,
    stream,
    value,
    quality,
    start,
    slot_ptr,
    slot_list,
    slot_dma,
    slot_role,
    dma_ptr,
    dma_slots,
    params,
    si,
    sf,
    ring,
    ring_min,
    di,
    counters,
    out_dma,
    out_min,
    out_gap,
    out_lag,
    out_vals,
    ev_type,
    ev_slot,
    ev_t0,
    ev_t1,
    ev_v0,
    ev_v1,
):
    """Rows from `start` into DMA minute rows and sample events (a gap event's
    v0 is the silence that made it a dropout, in ns; a row's lag, see LAG_STRIDE).

    Returns (next_row, n_minute_rows, n_events); next_row < len(ts) when an
    output buffer filled up.
    """
    n = ts.shape[0]
    cap_out = out_min.shape[0]
    cap_ev = ev_type.shape[0]
    n_out = 0
    n_ev = 0
    n_streams = slot_ptr.shape[0] - 1
    grace = np.int64(params[P_GRACE_MIN])
    gap_reset = np.int64(params[P_GAP_RESET_MIN])
    jump = np.int64(params[P_CLOCK_JUMP_MIN]) * NS_PER_MIN
    fan = 1
    for sid in range(n_streams):
        fan = max(fan, slot_ptr[sid + 1] - slot_ptr[sid])
    reserve_out = (gap_reset + grace + 3) * (dma_ptr.shape[0] - 1)
    reserve_ev = 4 * fan + 4
    i = start
    while i < n:
        # room for the worst case of this row, so a minute is never emitted in pieces:
        # every DMA catches up gap_reset + grace + 2 minutes, every slot emits 4 events
        if n_out + reserve_out > cap_out or n_ev + reserve_ev > cap_ev:
            break
        sid = stream[i]
        if sid < 0 or sid >= n_streams:
            i += 1
            continue
        t = ts[i]
        x = value[i]
        good = np.isfinite(x) and (quality[i] & 15) == 0
        for j in range(slot_ptr[sid], slot_ptr[sid + 1]):
            s = slot_list[j]
            d = slot_dma[s]
            wm = di[d, DI_WATERMARK]
            if wm > 0 and t < wm - jump:
                # clock jumped back: restart this DMA's timeline at t
                counters[C_CLOCK_JUMP] += 1
                for jj in range(dma_ptr[d], dma_ptr[d + 1]):
                    ss = dma_slots[jj]
                    si[ss, SI_LAST_TS] = 0
                    si[ss, SI_CUR_MIN] = -1
                    sf[ss, SF_SUM] = 0.0
                    sf[ss, SF_CNT] = 0.0
                    ring_min[ss, :] = -1
                di[d, DI_WATERMARK] = 0
                di[d, DI_DONE_MIN] = t // NS_PER_MIN - 1
                out_dma[n_out] = d
                out_min[n_out] = t // NS_PER_MIN - 1
                out_gap[n_out] = 1
                out_lag[n_out] = 0
                out_vals[n_out, :] = np.nan
                n_out += 1
                wm = 0
            last = si[s, SI_LAST_TS]
            if last > 0 and t <= last:
                counters[C_DISORDER] += 1
                continue
            minute = t // NS_PER_MIN
            if minute <= di[d, DI_DONE_MIN]:
                counters[C_LATE] += 1
                continue
            if last > 0:
                _learn_interval(s, t - last, si, sf, di, d, dma_ptr, dma_slots, slot_role)
            # judged after the gap joins the estimate: a stream's first gaps are its cadence
            limit = max(params[P_DROPOUT_NS], params[P_DROPOUT_K] * sf[s, SF_IV])
            dropout = last > 0 and t - last > limit
            if dropout:
                ev_type[n_ev] = EV_GAP
                ev_slot[n_ev] = s
                ev_t0[n_ev] = last
                ev_t1[n_ev] = t
                ev_v0[n_ev] = limit
                ev_v1[n_ev] = np.nan
                n_ev += 1
            si[s, SI_LAST_TS] = t
            if t > wm:
                di[d, DI_WATERMARK] = t
            if not good:
                counters[C_BAD] += 1
            else:
                # minute aggregate
                if si[s, SI_CUR_MIN] != minute:
                    _close_minute(s, si, sf, ring, ring_min)
                    if last > 0 and not dropout and si[s, SI_LAG] > 0:
                        _fill(s, t, x, last, di[d, DI_DONE_MIN], slot_role[s], si, sf, ring,
                              ring_min)  # fmt: skip
                    si[s, SI_CUR_MIN] = minute
                sf[s, SF_SUM] += x
                sf[s, SF_CNT] += 1.0
                n_ev = _sample_checks(
                    s,
                    t,
                    x,
                    slot_role[s],
                    params,
                    si,
                    sf,
                    ev_type,
                    ev_slot,
                    ev_t0,
                    ev_t1,
                    ev_v0,
                    ev_v1,
                    n_ev,
                )
            upto = di[d, DI_WATERMARK] // NS_PER_MIN - 1 - grace - di[d, DI_LAG]
            if upto > di[d, DI_DONE_MIN]:
                n_out = _emit_minutes(
                    d,
                    upto,
                    dma_ptr,
                    dma_slots,
                    si,
                    sf,
                    ring,
                    ring_min,
                    di,
                    counters,
                    out_dma,
                    out_min,
                    out_gap,
                    out_lag,
                    out_vals,
                    n_out,
                    gap_reset,
                )
        i += 1
    return i, n_out, n_ev


@njit(cache=True, nogil=True)
def _push_event(ev_type, ev_slot, ev_t0, ev_t1, ev_v0, ev_v1, n_ev, kind, s, t0, t1, v0, v1):  # type: ignore[no-untyped-def]
    ev_type[n_ev] = kind
    ev_slot[n_ev] = s
    ev_t0[n_ev] = t0
    ev_t1[n_ev] = t1
    ev_v0[n_ev] = v0
    ev_v1[n_ev] = v1
    return n_ev + 1


@njit(cache=True, nogil=True)
def _sample_checks(  # type: ignore[no-untyped-def]
    s, t, x, role, params, si, sf, ev_type, ev_slot, ev_t0, ev_t1, ev_v0, ev_v1, n_ev
):
    """Stuck, spike and (for fast pressure streams) transient checks on one good sample."""
    x1 = sf[s, SF_X1]
    x2 = sf[s, SF_X2]
    prev_ts = si[s, SI_PREV_TS]
    si[s, SI_N] += 1
    # stuck: the exact value repeating for stuck_s (customer meters idle legitimately)
    if role != CONSUMPTION:
        if np.isfinite(x1) and abs(x - x1) <= params[P_STUCK_EPS]:
            if si[s, SI_STUCK_SINCE] == 0:
                si[s, SI_STUCK_SINCE] = prev_ts
            if si[s, SI_STUCK_ON] == 0 and t - si[s, SI_STUCK_SINCE] >= params[P_STUCK_NS]:
                si[s, SI_STUCK_ON] = 1
                n_ev = _push_event(
                    ev_type,
                    ev_slot,
                    ev_t0,
                    ev_t1,
                    ev_v0,
                    ev_v1,
                    n_ev,
                    EV_STUCK_ON,
                    s,
                    si[s, SI_STUCK_SINCE],
                    t,
                    x,
                    0.0,
                )
        else:
            if si[s, SI_STUCK_ON] == 1:
                n_ev = _push_event(
                    ev_type,
                    ev_slot,
                    ev_t0,
                    ev_t1,
                    ev_v0,
                    ev_v1,
                    n_ev,
                    EV_STUCK_OFF,
                    s,
                    si[s, SI_STUCK_SINCE],
                    t,
                    x,
                    0.0,
                )
            si[s, SI_STUCK_ON] = 0
            si[s, SI_STUCK_SINCE] = 0
    # spike: x1 jumped away from x2 and x came back; judged one sample late
    spiked = False
    if np.isfinite(x1) and np.isfinite(x2) and si[s, SI_N] > 30:
        jump1 = abs(x1 - x2)
        limit = params[P_SPIKE_K] * sf[s, SF_DIFF] + params[P_SPIKE_FLOOR]
        if jump1 > limit and abs(x - x2) < 0.3 * jump1:
            spiked = True
            n_ev = _push_event(
                ev_type,
                ev_slot,
                ev_t0,
                ev_t1,
                ev_v0,
                ev_v1,
                n_ev,
                EV_SPIKE,
                s,
                prev_ts,
                t,
                x1,
                x1 - x2,
            )
    if np.isfinite(x1) and not spiked:
        diff = abs(x - x1)
        if si[s, SI_N] <= 2:
            sf[s, SF_DIFF] = diff
        else:
            sf[s, SF_DIFF] += 0.05 * (min(diff, 10.0 * sf[s, SF_DIFF] + 1e-9) - sf[s, SF_DIFF])
    # transient: only on pressure streams sampled at >= transient_min_hz
    if role == PRESSURE and prev_ts > 0:
        dt = float(t - prev_ts)
        sf[s, SF_DT] = dt if sf[s, SF_DT] == 0.0 else sf[s, SF_DT] + 0.1 * (dt - sf[s, SF_DT])
        if sf[s, SF_DT] <= NS_PER_S / params[P_TR_MIN_HZ] and dt < 10 * NS_PER_S:
            n_ev = _transient(
                s, t, x, dt, params, si, sf, ev_type, ev_slot, ev_t0, ev_t1, ev_v0, ev_v1, n_ev
            )
        else:
            sf[s, SF_TR_N] = 0.0
            si[s, SI_TR_ON] = 0
    sf[s, SF_X2] = x1
    sf[s, SF_X1] = x
    si[s, SI_PREV_TS] = t
    return n_ev


@njit(cache=True, nogil=True)
def _transient(s, t, x, dt, params, si, sf, ev_type, ev_slot, ev_t0, ev_t1, ev_v0, ev_v1, n_ev):  # type: ignore[no-untyped-def]
    if sf[s, SF_TR_N] == 0.0:
        sf[s, SF_BASE] = x
        sf[s, SF_VAR] = 0.0
    sf[s, SF_TR_N] += 1.0
    dev = x - sf[s, SF_BASE]
    sd = np.sqrt(sf[s, SF_VAR])
    thr = max(params[P_TR_K] * sd, params[P_TR_MIN_M])
    warm = sf[s, SF_TR_N] * dt >= params[P_TR_TAU_S] * NS_PER_S
    if si[s, SI_TR_ON] == 0:
        if warm and abs(dev) > thr:
            si[s, SI_TR_ON] = 1
            si[s, SI_TR_ONSET] = si[s, SI_TR_LASTQ] if si[s, SI_TR_LASTQ] > 0 else t
            si[s, SI_TR_QUIET] = 0
            sf[s, SF_PEAK] = dev
            n_ev = _push_event(
                ev_type,
                ev_slot,
                ev_t0,
                ev_t1,
                ev_v0,
                ev_v1,
                n_ev,
                EV_TRANSIENT_ON,
                s,
                si[s, SI_TR_ONSET],
                t,
                dev,
                sd,
            )
        else:
            alpha = min(dt / (params[P_TR_TAU_S] * NS_PER_S), 1.0)
            sf[s, SF_BASE] += alpha * dev
            sf[s, SF_VAR] += alpha * (dev * dev - sf[s, SF_VAR])
            if abs(dev) <= 2.0 * sd + 1e-12 or not warm:
                si[s, SI_TR_LASTQ] = t
        return n_ev
    if abs(dev) > abs(sf[s, SF_PEAK]):
        sf[s, SF_PEAK] = dev
    if abs(dev) < 0.5 * thr:
        if si[s, SI_TR_QUIET] == 0:
            si[s, SI_TR_QUIET] = t
    else:
        si[s, SI_TR_QUIET] = 0
    quiet = si[s, SI_TR_QUIET] > 0 and t - si[s, SI_TR_QUIET] >= params[P_TR_QUIET_NS]
    if quiet or t - si[s, SI_TR_ONSET] >= params[P_TR_MAX_NS]:
        si[s, SI_TR_ON] = 0
        n_ev = _push_event(
            ev_type,
            ev_slot,
            ev_t0,
            ev_t1,
            ev_v0,
            ev_v1,
            n_ev,
            EV_TRANSIENT_OFF,
            s,
            si[s, SI_TR_ONSET],
            t,
            sf[s, SF_PEAK],
            0.0,
        )
        # the pressure may settle at a new level: learn it afresh
        sf[s, SF_BASE] = x
        si[s, SI_TR_LASTQ] = t
    return n_ev
