"""Numba kernels of the per-DMA minute detectors: arrays in, arrays out, state explicit.

    DMA minute rows (from water_ingest.ingest_rows)
        --step_minutes--> per-minute scores: burst, inflow CUSUM, the day's intercept,
                          night flow, pressure gradient, mass balance

`StepState` holds the learned state (profiles, rings, sums) as plain arrays. Rows
are processed strictly in order, so the scores depend on the rows and never on
where the batches were cut; the gap rule is in `water_ingest`.
"""

# Kernels take columns, state and outputs positionally: numba has no keyword-only arguments.
# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np

from gateway.analytics.water_ingest import LAG_STRIDE, NS_PER_MIN, njit

MAXP = 8  # pressure points per DMA
W = 64  # minutes of residual and pressure kept for the burst windows
BURST_AFTER, BURST_BEFORE = 5, 30

# step parameters
(
    Q_BIN_MIN,
    Q_HIST,
    Q_MIN_HIST,
    Q_SCALE_MIN,
    Q_FLOOR_REL,
    Q_FLOOR_LPS,
    Q_CUSUM_K,
    Q_CUSUM_H,
    Q_RELEARN_MIN,
    Q_NIGHT_START,
    Q_NIGHT_END,
    Q_NIGHT_HIST,
    Q_NIGHT_MIN,
    Q_NIGHT_Z,
    Q_NIGHT_ALLOW,
    Q_BURST_K,
    Q_BURST_FRAC,
    Q_BURST_LPS,
    Q_BURST_DROP_M,
    Q_BURST_TRACK_MIN,
    Q_DP_FLOOR_M,
    Q_DP_H,
    Q_MB_H,
    Q_GAP_RESET_MIN,
    Q_MAX_AGE_MIN,
    Q_TZ_MIN,
) = range(26)
Q_WEEKEND = 26  # bit mask of weekend days, Monday = bit 0
Q_NIGHT_FLOOR = 27
Q_Z_CLIP = 28
Q_IC_FLOOR = 29
Q_IC_Z = 30
N_STEP_PARAMS = 31

# per-DMA float state
(
    F_QMEAN,
    F_QN,
    F_SCALE,
    F_DIFF,
    F_BSUM,
    F_BN,
    F_BCSUM,
    F_BCN,
    F_S,
    F_RES_SUM,
    F_RES_N,
    F_NSUM,
    F_NN,
    F_BREF,
    F_BSTEP,
    F_SMB,
    F_MB_SUM,
    F_MB_N,
    F_BPREF,
    F_BPSTEP,
    F_STEPV,
    F_STEPN,
    F_MBW_SUM,  # the mass-balance window: bins averaged to the slowest stream's interval
    F_MBW_N,
    F_XN,  # sums over the inflow CUSUM's excursion: bins, residual, expected flow, ...
    F_XE,
    F_XM,
    F_XMM,
    F_XME,
    F_XLO,  # lowest and highest expected flow in it
    F_XHI,
) = range(31)
N_F = 31
# per-DMA int state
(
    I_LAST_M,
    I_BIN,
    I_S_START,
    I_ALARM_SINCE,
    I_NIGHT_DAY,
    I_LAST_NORMAL,
    I_BURST_ON,
    I_BURST_START,
    I_MB_START,
    I_BPOINT,
    I_MB_ALARM_SINCE,
    I_IC_START,
    I_IC_SKIP,
    I_BPRES,
) = range(14)
N_I = 14
# outputs
(
    O_BURST,
    O_BURST_MAG,
    O_BURST_DROP,
    O_CUSUM,
    O_CUSUM_MAG,
    O_MNF,
    O_MNF_MAG,
    O_MNF_VAL,
    O_MNF_BASE,
    O_DP,
    O_DP_MAG,
    O_MB,
    O_MB_MAG,
    O_QMEAN,
    O_RESID,
    O_IC,
    O_IC_MAG,
    O_CUSUM_ADD,
) = range(18)
N_O = 18
(OI_BURST_START, OI_CUSUM_START, OI_MNF_START, OI_DP_POINT, OI_MB_START, OI_BURST_POINT,
 OI_IC_START) = range(7)  # fmt: skip
N_OI = 7
MB_RING = 192  # two days of 15-minute bins


class StepState:
    """The minute detectors' state for `n_dma` DMAs (plain arrays, numba reads them)."""

    def __init__(self, n_dma: int, bin_min: int, hist: int, night_hist: int) -> None:
        nwb = 7 * 1440 // bin_min
        ndb = 1440 // bin_min
        self.f = np.zeros((n_dma, N_F))
        self.f[:, F_SCALE] = 1.0
        self.i = np.zeros((n_dma, N_I), np.int64)
        self.i[:, I_LAST_M] = -1
        self.i[:, I_BIN] = -1
        self.i[:, I_NIGHT_DAY] = -1
        self.rr = np.full((n_dma, W), np.nan)
        self.pr = np.full((n_dma, MAXP, W), np.nan)
        self.pdiff = np.zeros((n_dma, MAXP))
        self.bdp = np.zeros((n_dma, MAXP, 2))  # bin sums of inlet - point pressure, and counts
        self.wk = np.full((n_dma, nwb, hist), np.nan)
        self.wkn = np.zeros((n_dma, nwb), np.int64)
        # time of day, for weekdays and weekend days apart (the fallback of time of week)
        self.dy = np.full((n_dma, 2 * ndb, hist), np.nan)
        self.dyn = np.zeros((n_dma, 2 * ndb), np.int64)
        self.sdp = np.zeros((n_dma, MAXP, 2))  # two-sided CUSUM of the gradient residual
        self.night = np.full((n_dma, 2, night_hist), np.nan)  # weekday and weekend nights
        self.nightn = np.zeros((n_dma, 2), np.int64)
        self.mb = np.full((n_dma, MB_RING), np.nan)
        self.mbn = np.zeros(n_dma, np.int64)
        # the last day of bins (flow, profile) and the daily history of the fitted intercept
        self.ic = np.full((n_dma, 3, ndb), np.nan)  # flow, profile, local day
        # per pressure point, EWMA sums of the fit loss = c + k * flow^1.85: w, x, y, xx, xy,
        # residual variance, bins seen
        self.grad = np.zeros((n_dma, MAXP, 7))
        self.ich = np.full((n_dma, night_hist), np.nan)
        self.ichn = np.zeros(n_dma, np.int64)
        # per pressure point: its time-of-day profile (weekdays, then weekend days), the
        # profile's value each minute for the burst windows, bin sums, and the running
        # mean square of the burst test's pressure drop with its count
        self.pp = np.full((n_dma, MAXP, W), np.nan)
        self.bps = np.zeros((n_dma, MAXP, 2))
        self.pdy = np.full((n_dma, MAXP, 2 * ndb, hist), np.nan)
        self.pdyn = np.zeros((n_dma, MAXP, 2 * ndb), np.int64)
        self.pstep = np.zeros((n_dma, MAXP, 2))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.f,
            self.i,
            self.rr,
            self.pr,
            self.pdiff,
            self.bdp,
            self.wk,
            self.wkn,
            self.dy,
            self.dyn,
            self.sdp,
            self.night,
            self.nightn,
            self.mb,
            self.mbn,
            self.ic,
            self.ich,
            self.ichn,
            self.grad,
            self.pp,
            self.bps,
            self.pdy,
            self.pdyn,
            self.pstep,
        )


@njit(cache=True, nogil=True)
def _med_mad(vals, count):  # type: ignore[no-untyped-def]
    v = vals[:count].copy()
    med = np.median(v)
    return med, np.median(np.abs(v - med))


@njit(cache=True, nogil=True)
def _push(ring, count, x):  # type: ignore[no-untyped-def]
    """Append x to a ring whose newest element is at count % len."""
    ring[count % ring.shape[0]] = x
    return count + 1


@njit(cache=True, nogil=True)
def _day_bin(bin_abs, ndb, p):  # type: ignore[no-untyped-def]
    """Index of a local bin in the day-type profile: weekend days after weekdays."""
    weekday = (bin_abs // ndb + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekend = (np.int64(p[Q_WEEKEND]) >> weekday) & 1
    return weekend * ndb + bin_abs % ndb


@njit(cache=True, nogil=True)
def _profile(d, tow, tod, p, wk, wkn, dy, dyn):  # type: ignore[no-untyped-def]
    """Median and scale of the flow in this bin: time of week once it has enough
    history, else time of day for the day type; NaN before either has."""
    hist = wk.shape[2]
    if wkn[d, tow] >= p[Q_MIN_HIST]:
        med, mad = _med_mad(wk[d, tow], min(wkn[d, tow], hist))
    elif dyn[d, tod] >= p[Q_MIN_HIST]:
        med, mad = _med_mad(dy[d, tod], min(dyn[d, tod], hist))
    else:
        # no fallback to the other day type: a weekday profile on a Sunday morning
        # looks like a burst; until a day type has history, it is not judged by flow
        return np.nan, np.nan
    return med, max(1.4826 * mad, p[Q_FLOOR_REL] * abs(med), p[Q_FLOOR_LPS])


@njit(cache=True, nogil=True)
def _profile_at(d, at, p, wk, wkn, dy, dyn, bin_min, nwb, ndb):  # type: ignore[no-untyped-def]
    """The flow profile at local minute `at` (a float), between bin centres."""
    bin_abs = np.int64(np.floor(at / bin_min))
    frac = (at - bin_abs * bin_min) / bin_min
    nb = bin_abs + 1 if frac >= 0.5 else bin_abs - 1
    med, _ = _profile(d, bin_abs % nwb, _day_bin(bin_abs, ndb, p), p, wk, wkn, dy, dyn)
    med2, _ = _profile(d, nb % nwb, _day_bin(nb, ndb, p), p, wk, wkn, dy, dyn)
    w = abs(frac - 0.5)
    if np.isfinite(med2):
        med = (1.0 - w) * med + w * med2
    return med


@njit(cache=True, nogil=True)
def _pressure_profile(d, j, bin_abs, frac, p, pdy, pdyn, ndb):  # type: ignore[no-untyped-def]
    """Point j's learned pressure at this minute (between bin centres), NaN until the
    bin has min_history days."""
    hist = pdy.shape[3]
    tod = _day_bin(bin_abs, ndb, p)
    if pdyn[d, j, tod] < p[Q_MIN_HIST]:
        # the other day type's: a timetable or the daily swing, a little off in time,
        # is closer than raw pressure
        tod = (tod + ndb) % (2 * ndb)
        if pdyn[d, j, tod] < p[Q_MIN_HIST]:
            return np.nan
    med = np.median(pdy[d, j, tod, : min(pdyn[d, j, tod], hist)])
    nb = bin_abs + 1 if frac >= 0.5 else bin_abs - 1
    tod2 = _day_bin(nb, ndb, p)
    if pdyn[d, j, tod2] < p[Q_MIN_HIST]:
        tod2 = (tod2 + ndb) % (2 * ndb)
    if pdyn[d, j, tod2] >= p[Q_MIN_HIST]:
        w = abs(frac - 0.5)
        med = (1.0 - w) * med + w * np.median(pdy[d, j, tod2, : min(pdyn[d, j, tod2], hist)])
    return med


@njit(cache=True, nogil=True)
def _reset_short(d, f, i, rr, pr, bdp, sdp):  # type: ignore[no-untyped-def]
    f[d, F_BSUM] = 0.0
    f[d, F_BN] = 0.0
    f[d, F_BCSUM] = 0.0
    f[d, F_BCN] = 0.0
    f[d, F_S] = 0.0
    f[d, F_RES_SUM] = 0.0
    f[d, F_RES_N] = 0.0
    f[d, F_NSUM] = 0.0
    f[d, F_NN] = 0.0
    f[d, F_SMB] = 0.0
    f[d, F_MB_SUM] = 0.0
    f[d, F_MB_N] = 0.0
    f[d, F_MBW_SUM] = 0.0
    f[d, F_MBW_N] = 0.0
    i[d, I_BIN] = -1
    i[d, I_NIGHT_DAY] = -1
    i[d, I_BURST_ON] = 0
    i[d, I_ALARM_SINCE] = 0
    i[d, I_MB_ALARM_SINCE] = 0
    rr[d, :] = np.nan
    pr[d, :, :] = np.nan
    bdp[d, :, :] = 0.0
    sdp[d, :, :] = 0.0


@njit(cache=True, nogil=True)
def _window_mean(ring, m, lo, hi):  # type: ignore[no-untyped-def]
    """Mean and count of ring values for minutes m-hi .. m-lo."""
    s = 0.0
    n = 0
    for k in range(lo, hi + 1):
        v = ring[(m - k) % W]
        if np.isfinite(v):
            s += v
            n += 1
    return (s / n if n > 0 else np.nan), n


@njit(cache=True, nogil=True)
def _window_min(ring, m, lo, hi, sign):  # type: ignore[no-untyped-def]
    out = np.inf
    for k in range(lo, hi + 1):
        v = ring[(m - k) % W]
        if np.isfinite(v):
            out = min(out, sign * v)
    return out


@njit(cache=True, nogil=True)
def step_minutes(  # type: ignore[no-untyped-def]
    dma,
    minute,
    gap,
    q,
    pres,
    n_pres,
    cons,
    lag,
    p,
    f,
    i,
    rr,
    pr,
    pdiff,
    bdp,
    wk,
    wkn,
    dy,
    dyn,
    sdp,
    night,
    nightn,
    mb,
    mbn,
    ic,
    ich,
    ichn,
    grad,
    pp,
    bps,
    pdy,
    pdyn,
    pstep,
    out,
    outi,
):
    """Run the per-DMA minute detectors over DMA minute rows, in order."""
    bin_min = np.int64(p[Q_BIN_MIN])
    nwb = wk.shape[1]
    ndb = dy.shape[1] // 2
    hist = wk.shape[2]
    tz = np.int64(p[Q_TZ_MIN])
    for k in range(dma.shape[0]):
        d = dma[k]
        m = minute[k]
        out[k, :] = np.nan
        outi[k, :] = 0
        last = i[d, I_LAST_M]
        if gap[k] == 1 or (last >= 0 and m - last > p[Q_GAP_RESET_MIN]):
            _reset_short(d, f, i, rr, pr, bdp, sdp)
            pp[d, :, :] = np.nan
            bps[d, :, :] = 0.0
            ic[d, :, :] = np.nan
            if last >= 0 and m - last > p[Q_MAX_AGE_MIN]:
                wkn[d, :] = 0
                dyn[d, :] = 0
                pdyn[d, :, :] = 0
                nightn[d, :] = 0
                mbn[d] = 0
                f[d, F_QN] = 0.0
            i[d, I_LAST_M] = m
            if gap[k] == 1:
                continue
        i[d, I_LAST_M] = m
        local = m + tz
        bin_abs = local // bin_min
        x = q[k]
        # ---- close the previous bin: profile residual CUSUM, gradient, mass balance
        if i[d, I_BIN] >= 0 and bin_abs != i[d, I_BIN]:
            _close_bin(
                d,
                m,
                p,
                f,
                i,
                wk,
                wkn,
                dy,
                dyn,
                sdp,
                bdp,
                mb,
                mbn,
                ic,
                ich,
                ichn,
                grad,
                bps,
                pdy,
                pdyn,
                n_pres[d],
                lag[k],
                nwb,
                ndb,
                hist,
                out,
                outi,
                k,
            )
        if i[d, I_BIN] != bin_abs:
            i[d, I_BIN] = bin_abs
            f[d, F_BSUM] = 0.0
            f[d, F_BN] = 0.0
            f[d, F_BCSUM] = 0.0
            f[d, F_BCN] = 0.0
            bdp[d, :, :] = 0.0
            bps[d, :, :] = 0.0
        if np.isfinite(x):
            f[d, F_BSUM] += x
            f[d, F_BN] += 1.0
            if np.isfinite(cons[k]):
                f[d, F_BCSUM] += x - cons[k]
                f[d, F_BCN] += 1.0
            f[d, F_QN] += 1.0
            f[d, F_QMEAN] += (x - f[d, F_QMEAN]) / min(f[d, F_QN], 7.0 * 1440.0)
        for j in range(1, n_pres[d]):
            if np.isfinite(pres[k, 0]) and np.isfinite(pres[k, j]):
                bdp[d, j, 0] += pres[k, 0] - pres[k, j]
                bdp[d, j, 1] += 1.0
        out[k, O_QMEAN] = f[d, F_QMEAN]
        # ---- minute residual against the profile, for the burst windows
        # the profile between bin centres, so ramps do not leave steps at bin edges; a
        # slow inflow meter's reading is one value over its interval, and so is the
        # profile it is held against: its mean over that interval
        lag_all = lag[k] % LAG_STRIDE
        res_q = min(max(lag[k] // LAG_STRIDE, 1), W - 1)
        frac = ((local % bin_min) + 0.5) / bin_min
        b0 = ((local - 1) // res_q) * res_q + 1 if res_q > 1 else local
        parts = max(1, res_q // bin_min)
        med = 0.0
        for j in range(parts):
            at = b0 + (j + 0.5) * res_q / parts
            med += _profile_at(d, at, p, wk, wkn, dy, dyn, bin_min, nwb, ndb) / parts
        # no profile yet: no flow residual, so no flow burst (pressure drops still count)
        r = x - f[d, F_SCALE] * med if np.isfinite(med) else np.nan
        # noise from differences one reading apart: a minute, or a slow stream's interval
        res = min(max(lag_all, 1), W - 1)
        prev_r = rr[d, (m - res_q) % W]
        rr[d, m % W] = r
        if np.isfinite(r) and np.isfinite(prev_r):
            f[d, F_DIFF] += 0.02 * (min(abs(r - prev_r), 10 * f[d, F_DIFF] + 1e-9) - f[d, F_DIFF])
        for j in range(n_pres[d]):
            pv = pres[k, j]
            prev = pr[d, j, (m - res) % W]
            pr[d, j, m % W] = pv
            pp[d, j, m % W] = _pressure_profile(d, j, bin_abs, frac, p, pdy, pdyn, ndb)
            if np.isfinite(pv):
                bps[d, j, 0] += pv
                bps[d, j, 1] += 1.0
                if np.isfinite(prev):
                    pdiff[d, j] += 0.02 * (
                        min(abs(pv - prev), 10 * pdiff[d, j] + 1e-9) - pdiff[d, j]
                    )
        out[k, O_RESID] = r
        level = np.nan
        if np.isfinite(med):
            level = max(f[d, F_SCALE] * med, 0.25 * f[d, F_QMEAN], p[Q_BURST_LPS])
        _burst(d, m, p, f, i, rr, pr, pp, pdiff, pstep, n_pres[d], level, res_q, res, out, outi, k)
        # ---- minimum night flow, judged when the night window ends
        mod = local % 1440
        day = local // 1440
        if p[Q_NIGHT_START] <= mod < p[Q_NIGHT_END]:
            if i[d, I_NIGHT_DAY] != day:
                i[d, I_NIGHT_DAY] = day
                f[d, F_NSUM] = 0.0
                f[d, F_NN] = 0.0
            if np.isfinite(x):
                f[d, F_NSUM] += x
                f[d, F_NN] += 1.0
        elif i[d, I_NIGHT_DAY] == day and mod >= p[Q_NIGHT_END]:
            i[d, I_NIGHT_DAY] = -1
            if f[d, F_NN] >= p[Q_NIGHT_MIN]:
                weekend = (np.int64(p[Q_WEEKEND]) >> ((day + 3) % 7)) & 1
                _judge_night(d, m, p, f, i, night[d, weekend], nightn[d], weekend, out, outi, k)
    return dma.shape[0]


@njit(cache=True, nogil=True)
def _burst(d, m, p, f, i, rr, pr, pp, pdiff, pstep, npres, level, res_q, res, out, outi, k):  # type: ignore[no-untyped-def]
    """A step up in the flow residual or down in a pressure, held for BURST_AFTER minutes.
    `level` is the flow expected now (NaN before the profile is learned); `res_q` and
    `res` the minutes between flow and between any readings: a window of 30 minutes of
    15-minute data holds 2 of them."""
    white = np.sqrt(1.0 / max(BURST_AFTER / res_q, 1.0) + 1.0 / max(BURST_BEFORE / res_q, 1.0))
    pwhite = np.sqrt(1.0 / max(BURST_AFTER / res, 1.0) + 1.0 / max(BURST_BEFORE / res, 1.0))
    after, na = _window_mean(rr[d], m, 0, BURST_AFTER - 1)
    before, nb = _window_mean(rr[d], m, BURST_AFTER, BURST_AFTER + BURST_BEFORE - 1)
    lead, nl = _window_mean(rr[d], m, BURST_AFTER, BURST_AFTER + 4)
    # noise of the step from minute differences, as if it were white; and the step
    # statistic's own spread, relative to the flow: demand noise is correlated over
    # minutes and grows with demand, so the first alone understates the morning peak
    sigma = 0.886 * f[d, F_DIFF] * white
    if f[d, F_STEPN] >= 60:
        sigma = max(sigma, np.sqrt(f[d, F_STEPV]) * level)
    rel = (after - before) / level
    if i[d, I_BURST_ON] == 0 and na >= BURST_AFTER - 1 and nb >= 20 and np.isfinite(rel):
        v = f[d, F_STEPV]
        r2 = min(rel * rel, 16.0 * v) if f[d, F_STEPN] >= 60 else rel * rel
        f[d, F_STEPN] += 1.0
        f[d, F_STEPV] += (r2 - v) / min(f[d, F_STEPN], 3.0 * 1440.0)
    thr = max(p[Q_BURST_K] * sigma, p[Q_BURST_FRAC] * f[d, F_QMEAN], p[Q_BURST_LPS])
    if i[d, I_BURST_ON] == 1:
        # follow an open burst until the flow returns or it is old enough to be a leak
        flevel = (after - f[d, F_BREF]) / f[d, F_BSTEP] if na >= 3 else np.nan
        plevel = np.nan
        j = i[d, I_BPOINT]
        if f[d, F_BPSTEP] > 0:
            ring = pr[d, j] - pp[d, j] if i[d, I_BPRES] == 1 else pr[d, j]
            pa, npa = _window_mean(ring, m, 0, BURST_AFTER - 1)
            plevel = (f[d, F_BPREF] - pa) / f[d, F_BPSTEP] if npa >= 3 else np.nan
        lv = max(flevel if np.isfinite(flevel) else 0.0, plevel if np.isfinite(plevel) else 0.0)
        if lv < 0.5 or m - i[d, I_BURST_START] // NS_PER_MIN > p[Q_BURST_TRACK_MIN]:
            i[d, I_BURST_ON] = 0
        else:
            out[k, O_BURST] = lv / (1.0 + lv) if lv < 1.0 else 0.5 + 0.25 * min(lv - 1.0, 1.0)
            out[k, O_BURST_MAG] = after - f[d, F_BREF] if na >= 3 else np.nan
            out[k, O_BURST_DROP] = f[d, F_BPREF] - pa if f[d, F_BPSTEP] > 0 else np.nan
            outi[k, OI_BURST_START] = i[d, I_BURST_START]
            outi[k, OI_BURST_POINT] = j
        return
    best = 0.0
    if na >= BURST_AFTER - 1 and nb >= 20 and nl >= 3:
        step = after - before
        lowest = _window_min(rr[d], m, 0, BURST_AFTER - 1, 1.0)
        ramp = abs(lead - before)
        # a burst is a step within a minute or two, not a ramp: find the sharpest rise
        rise = -np.inf
        for kk in range(BURST_AFTER):
            a1 = rr[d, (m - kk) % W]
            a0 = rr[d, (m - kk - 2) % W]
            if np.isfinite(a1) and np.isfinite(a0):
                rise = max(rise, a1 - a0)
        abrupt = rise >= 0.5 * step
        if step > 0 and lowest - before >= 0.6 * thr and ramp < 0.35 * step and abrupt:
            best = step / thr
            if best >= 1.0:
                i[d, I_BURST_ON] = 1
                f[d, F_BREF] = before
                f[d, F_BSTEP] = step
                f[d, F_BPSTEP] = 0.0
                i[d, I_BURST_START] = (m - BURST_AFTER + 1) * NS_PER_MIN
                out[k, O_BURST_MAG] = step
    # head loss goes with flow^1.85 and demand noise with flow, so a pressure's noise
    # grows with the flow^1.85: its drops are judged in units scaled by that
    g = 1.0
    if np.isfinite(level) and f[d, F_QMEAN] > 0:
        g = (level / max(f[d, F_QMEAN], p[Q_BURST_LPS])) ** 1.85
    for j in range(npres):
        # against the time-of-day profile once it is learned, raw until then; in the
        # half hour where the windows straddle the two, the point is not judged
        known = 0
        for kk in range(BURST_AFTER + BURST_BEFORE):
            known += np.isfinite(pp[d, j, (m - kk) % W])
        if known == BURST_AFTER + BURST_BEFORE:
            ring = pr[d, j] - pp[d, j]
        elif known == 0:
            ring = pr[d, j]
        else:
            continue
        pa, npa = _window_mean(ring, m, 0, BURST_AFTER - 1)
        pb, npb = _window_mean(ring, m, BURST_AFTER, BURST_AFTER + BURST_BEFORE - 1)
        pl, npl = _window_mean(ring, m, BURST_AFTER, BURST_AFTER + 4)
        if npa < BURST_AFTER - 1 or npb < 20 or npl < 3:
            continue
        drop = pb - pa
        ps = pstep[d, j]
        psig = 0.886 * pdiff[d, j] * pwhite
        if ps[1] >= 60:
            psig = max(psig, np.sqrt(ps[0]) * g)
        if i[d, I_BURST_ON] == 0:
            d2 = (drop / g) ** 2
            d2 = min(d2, 16.0 * ps[0]) if ps[1] >= 60 else d2
            ps[1] += 1.0
            ps[0] += (d2 - ps[0]) / min(ps[1], 3.0 * 1440.0)
        pthr = max(p[Q_BURST_K] * psig, p[Q_BURST_DROP_M])
        highest = -_window_min(ring, m, 0, BURST_AFTER - 1, -1.0)
        if drop > 0 and pb - highest >= 0.6 * pthr and abs(pl - pb) < 0.35 * drop:
            lv = drop / pthr
            if lv >= 1.0:
                if i[d, I_BURST_ON] == 0:
                    i[d, I_BURST_ON] = 1
                    i[d, I_BURST_START] = (m - BURST_AFTER + 1) * NS_PER_MIN
                    f[d, F_BREF] = before if np.isfinite(before) else 0.0
                    fstep = after - before
                    # follow the flow too when it stepped with the pressure
                    f[d, F_BSTEP] = fstep if fstep >= 0.5 * thr else np.inf
                    out[k, O_BURST_MAG] = fstep
                if drop > f[d, F_BPSTEP]:
                    f[d, F_BPREF] = pb
                    f[d, F_BPSTEP] = drop
                    i[d, I_BPOINT] = j
                    i[d, I_BPRES] = known > 0
                    out[k, O_BURST_DROP] = drop
            best = max(best, lv)
    if best > 0:
        out[k, O_BURST] = best / (1.0 + best) if best < 1.0 else 0.5 + 0.25 * min(best - 1.0, 1.0)
        outi[k, OI_BURST_START] = (m - BURST_AFTER + 1) * NS_PER_MIN
        outi[k, OI_BURST_POINT] = i[d, I_BPOINT]


@njit(cache=True, nogil=True)
def _cusum_track(d, z, resid, k_, h, bin_end, bin_min, f, i, fs, fsum, fn, istart, isince):  # type: ignore[no-untyped-def]
    """One bin of a one-sided CUSUM of z (clipped at 3 h), tracking when the excursion
    started, its mean residual, and since when it has been in alarm (s >= h / 2).
    `fs`..`isince` name the slots of this CUSUM in the f and i state arrays.
    Returns (score in [0, 1), mean residual of the excursion, alarm)."""
    if f[d, fs] == 0.0:
        i[d, istart] = bin_end - bin_min * NS_PER_MIN
        f[d, fsum] = 0.0
        f[d, fn] = 0.0
    f[d, fs] = min(max(0.0, f[d, fs] + z - k_), 3.0 * h)
    if f[d, fs] > 0.0:
        f[d, fsum] += resid
        f[d, fn] += 1.0
    alarm = f[d, fs] >= 0.5 * h
    if alarm and i[d, isince] == 0:
        i[d, isince] = bin_end
    elif not alarm:
        i[d, isince] = 0
    stat = f[d, fs] / h
    magnitude = f[d, fsum] / f[d, fn] if f[d, fn] > 0 else 0.0
    return stat / (1.0 + stat), magnitude, alarm


@njit(cache=True, nogil=True)
def _close_bin(  # type: ignore[no-untyped-def]
    d,
    m,
    p,
    f,
    i,
    wk,
    wkn,
    dy,
    dyn,
    sdp,
    bdp,
    mb,
    mbn,
    ic,
    ich,
    ichn,
    grad,
    bps,
    pdy,
    pdyn,
    npres,
    lag,
    nwb,
    ndb,
    hist,
    out,
    outi,
    k,
):
    bin_min = np.int64(p[Q_BIN_MIN])
    prev = i[d, I_BIN]
    tow = prev % nwb
    tod = _day_bin(prev, ndb, p)
    bin_end = ((prev + 1) * bin_min - np.int64(p[Q_TZ_MIN])) * NS_PER_MIN
    if i[d, I_BURST_ON] == 0:
        # pressures follow demand through the day (and a PRV's timetable): learn that,
        # so the burst test sees only what the time of day does not explain
        for j in range(npres):
            if bps[d, j, 1] >= 0.5 * bin_min:
                pdy[d, j, tod, pdyn[d, j, tod] % hist] = bps[d, j, 0] / bps[d, j, 1]
                pdyn[d, j, tod] += 1
    if f[d, F_BN] < 0.5 * bin_min:
        return
    x = f[d, F_BSUM] / f[d, F_BN]
    med, s = _profile(d, tow, tod, p, wk, wkn, dy, dyn)
    alarm = False
    if np.isfinite(med):
        # a slowly tracked demand scale absorbs hot days and holidays, not a leak's offset
        if med > 0 and p[Q_SCALE_MIN] > 0 and med >= 0.5 * f[d, F_QMEAN]:
            a = min(bin_min / p[Q_SCALE_MIN], 1.0)
            ratio = min(max(x / med, 0.5), 2.0)
            f[d, F_SCALE] += a * (ratio - f[d, F_SCALE])
        expected = f[d, F_SCALE] * med
        # clipped: a flushed hydrant is a few huge bins, a leak many moderate ones
        z = min((x - expected) / (f[d, F_SCALE] * s), p[Q_Z_CLIP])
        out[k, O_CUSUM], out[k, O_CUSUM_MAG], alarm = _cusum_track(
            d, z, x - expected, p[Q_CUSUM_K], p[Q_CUSUM_H], bin_end, bin_min, f, i,
            F_S, F_RES_SUM, F_RES_N, I_S_START, I_ALARM_SINCE,
        )  # fmt: skip
        outi[k, OI_CUSUM_START] = i[d, I_S_START]
        out[k, O_CUSUM_ADD] = _additive(d, f, x - expected, expected)
    _intercept(d, prev % ndb, bin_end, x, med, p, f, i, ic, ich, ichn, out, outi, k)
    relearn = alarm and bin_end - i[d, I_ALARM_SINCE] > p[Q_RELEARN_MIN] * NS_PER_MIN
    if (not alarm or relearn) and i[d, I_BURST_ON] == 0:
        wk[d, tow, wkn[d, tow] % hist] = x
        wkn[d, tow] += 1
        dy[d, tod, dyn[d, tod] % hist] = x
        dyn[d, tod] += 1
    # ---- pressure gradient: the loss from the inlet to each point, fitted as
    # c + k * flow^1.85 (elevation, then Hazen-Williams) over the last days. Demand and
    # leaks move along the curve; a drifting gauge or a shut valve moves off it
    best = 0.0
    xq = x**1.85 if x > 0 else np.nan
    alpha = 1.0 / (3.0 * 1440.0 / bin_min)
    for j in range(1, npres):
        if bdp[d, j, 1] < 0.5 * bin_min or not np.isfinite(xq):
            continue
        y = bdp[d, j, 0] / bdp[d, j, 1]
        gr = grad[d, j]
        alarm_dp = max(sdp[d, j, 0], sdp[d, j, 1]) >= 0.5 * p[Q_DP_H]
        if gr[6] >= 2 * 1440 / bin_min and gr[0] > 0:
            mx, my = gr[1] / gr[0], gr[2] / gr[0]
            vx = gr[3] / gr[0] - mx * mx
            if vx > 0:
                slope = (gr[4] / gr[0] - mx * my) / vx
                resid = y - (my + slope * (xq - mx))
                gs = max(np.sqrt(gr[5]), p[Q_DP_FLOOR_M])
                z = min(max(resid / gs, -p[Q_Z_CLIP]), p[Q_Z_CLIP])
                sdp[d, j, 0] = min(max(0.0, sdp[d, j, 0] + z - p[Q_CUSUM_K]), 3.0 * p[Q_DP_H])
                sdp[d, j, 1] = min(max(0.0, sdp[d, j, 1] - z - p[Q_CUSUM_K]), 3.0 * p[Q_DP_H])
                st = max(sdp[d, j, 0], sdp[d, j, 1]) / p[Q_DP_H]
                if st > best:
                    best = st
                    out[k, O_DP_MAG] = resid
                    outi[k, OI_DP_POINT] = j
                alarm_dp = max(sdp[d, j, 0], sdp[d, j, 1]) >= 0.5 * p[Q_DP_H]
                if not alarm_dp:
                    gr[5] += alpha * (resid * resid - gr[5])
        if alarm_dp:
            continue  # do not learn the anomaly
        a = max(alpha, 1.0 / (gr[6] + 1.0))
        gr[0] += a * (1.0 - gr[0])
        gr[1] += a * (xq - gr[1])
        gr[2] += a * (y - gr[2])
        gr[3] += a * (xq * xq - gr[3])
        gr[4] += a * (xq * y - gr[4])
        gr[6] += 1.0
    if npres > 1:
        out[k, O_DP] = best / (1.0 + best)
    # ---- mass balance: inflow - outflow - consumption against its own recent level
    # judged over windows as long as the slowest stream's interval (an hourly AMR
    # group against a minute inlet), so the day's ramps within an hour do not alias
    if f[d, F_BCN] >= 0.5 * bin_min:
        f[d, F_MBW_SUM] += f[d, F_BCSUM] / f[d, F_BCN]
        f[d, F_MBW_N] += 1.0
    lag = lag % LAG_STRIDE
    width = max(1, (lag + bin_min - 1) // bin_min)
    if prev % width == width - 1 and f[d, F_MBW_N] >= 0.5 * width:
        imb = f[d, F_MBW_SUM] / f[d, F_MBW_N]
        f[d, F_MBW_SUM] = 0.0
        f[d, F_MBW_N] = 0.0
        cnt = mbn[d]
        if cnt >= 1440 // (bin_min * width):  # a day of windows
            bmed, bmad = _med_mad(mb[d], min(cnt, MB_RING))
            bs = max(1.4826 * bmad, p[Q_FLOOR_LPS], 0.02 * abs(f[d, F_QMEAN]))
            z = (imb - bmed) / bs
            out[k, O_MB], out[k, O_MB_MAG], mb_alarm = _cusum_track(
                d, z, imb - bmed, p[Q_CUSUM_K], p[Q_MB_H], bin_end, bin_min, f, i,
                F_SMB, F_MB_SUM, F_MB_N, I_MB_START, I_MB_ALARM_SINCE,
            )  # fmt: skip
            outi[k, OI_MB_START] = i[d, I_MB_START]
            since = i[d, I_MB_ALARM_SINCE]
            if mb_alarm and bin_end - since <= p[Q_RELEARN_MIN] * NS_PER_MIN:
                return
        mb[d, cnt % MB_RING] = imb
        mbn[d] = cnt + 1


@njit(cache=True, nogil=True)
def _additive(d, f, resid, expected):  # type: ignore[no-untyped-def]
    """Of the inflow CUSUM's excursion, the part of the excess that is a constant L/s
    (a leak) rather than a share of the expected flow (a hot day): the fit
    resid = L + b x expected over its bins. NaN until the excursion has seen flows
    that differ by half (night and day), when the two cannot be told apart."""
    if f[d, F_S] == 0.0:
        for c in (F_XN, F_XE, F_XM, F_XMM, F_XME, F_XLO, F_XHI):
            f[d, c] = 0.0
        return np.nan
    f[d, F_XLO] = expected if f[d, F_XN] == 0.0 else min(f[d, F_XLO], expected)
    f[d, F_XN] += 1.0
    f[d, F_XE] += resid
    f[d, F_XM] += expected
    f[d, F_XMM] += expected * expected
    f[d, F_XME] += expected * resid
    f[d, F_XHI] = max(f[d, F_XHI], expected)
    n = f[d, F_XN]
    den = n * f[d, F_XMM] - f[d, F_XM] ** 2
    if f[d, F_XHI] < 1.5 * f[d, F_XLO] or den <= 1e-12 * n * f[d, F_XMM]:
        return np.nan
    return (f[d, F_XE] * f[d, F_XMM] - f[d, F_XM] * f[d, F_XME]) / den


@njit(cache=True, nogil=True)
def _intercept(d, slot, bin_end, x, med, p, f, i, ic, ich, ichn, out, outi, k):  # type: ignore[no-untyped-def]
    """Fit flow = a_day * profile + L over the last day of bins, one scale a per local
    day. Weather and demand shifts scale the profile; a leak adds a constant L, at night
    as by day. A day's scale is fitted once it has 8 hours of bins; before that its bins
    are left out, since night bins alone cannot tell a scale from a constant."""
    ndb = ic.shape[2]
    day = float(bin_end // NS_PER_MIN - 1 + np.int64(p[Q_TZ_MIN])) // 1440
    ic[d, 0, slot] = x
    ic[d, 1, slot] = med
    ic[d, 2, slot] = day
    # sums per part: 0 = today, 1 = earlier
    n = np.zeros(2)
    sx = np.zeros(2)
    sm = np.zeros(2)
    smm = np.zeros(2)
    smx = np.zeros(2)
    for b in range(ndb):
        xv = ic[d, 0, b]
        mv = ic[d, 1, b]
        if np.isfinite(xv) and np.isfinite(mv):
            part = 0 if ic[d, 2, b] == day else 1
            n[part] += 1
            sx[part] += xv
            sm[part] += mv
            smm[part] += mv * mv
            smx[part] += mv * xv
    short = ndb // 3
    if n[0] < short:  # today's scale is not known yet: fit the earlier part alone
        n[0] = sx[0] = sm[0] = smm[0] = smx[0] = 0.0
    if n[1] < short:
        n[1] = sx[1] = sm[1] = smm[1] = smx[1] = 0.0
    total = n[0] + n[1]
    if total < 0.5 * ndb:
        return
    # normal equations with a scale per part: L = (Sx - sum Sm*Smx/Smm) / (n - sum Sm^2/Smm)
    num = sx[0] + sx[1]
    den = total
    for part in range(2):
        if n[part] > 0:
            if smm[part] <= 0:
                return
            num -= sm[part] * smx[part] / smm[part]
            den -= sm[part] * sm[part] / smm[part]
    if den <= 1e-9 * total:
        return
    level = num / den
    cnt = ichn[d]
    size = ich.shape[1]
    alarm = False
    if cnt >= p[Q_MIN_HIST] + 1:
        lmed, lmad = _med_mad(ich[d], min(cnt, size))
        ls = max(1.4826 * lmad, p[Q_IC_FLOOR] * abs(f[d, F_QMEAN]), p[Q_FLOOR_LPS])
        z = (level - lmed) / ls
        stat = max(z, 0.0) / p[Q_IC_Z]
        out[k, O_IC] = stat / (1.0 + stat)
        out[k, O_IC_MAG] = level - lmed
        if z < 1.0:
            i[d, I_IC_START] = bin_end
        outi[k, OI_IC_START] = i[d, I_IC_START] if i[d, I_IC_START] > 0 else bin_end
        alarm = stat >= 0.5
    if slot == ndb - 1:  # the bin that closes a local day: one history point per day
        skip = i[d, I_IC_SKIP]
        if not alarm or skip >= p[Q_RELEARN_MIN] / 1440.0:
            ich[d, cnt % size] = level
            ichn[d] = cnt + 1
            i[d, I_IC_SKIP] = 0
        else:
            i[d, I_IC_SKIP] = skip + 1


@njit(cache=True, nogil=True)
def _judge_night(d, m, p, f, i, hist, count, t, out, outi, k):  # type: ignore[no-untyped-def]
    """Judge the night just ended against past nights of its day type `t` (weekend
    nights differ: later risers); `hist`, `count[t]` are that day type's history."""
    mnf = f[d, F_NSUM] / f[d, F_NN]
    end = m * NS_PER_MIN
    cnt = count[t]
    size = hist.shape[0]
    out[k, O_MNF_VAL] = mnf
    alarm = False
    if cnt >= p[Q_MIN_HIST] + 2:
        med, mad = _med_mad(hist, min(cnt, size))
        s = max(1.4826 * mad, p[Q_NIGHT_FLOOR] * abs(med), p[Q_FLOOR_LPS])
        excess = mnf - med - p[Q_NIGHT_ALLOW]
        z = excess / s
        stat = max(z, 0.0) / p[Q_NIGHT_Z]
        out[k, O_MNF] = stat / (1.0 + stat)
        out[k, O_MNF_MAG] = excess
        out[k, O_MNF_BASE] = med
        outi[k, OI_MNF_START] = i[d, I_LAST_NORMAL] if i[d, I_LAST_NORMAL] > 0 else end
        alarm = stat >= 0.5
    if not alarm:
        i[d, I_LAST_NORMAL] = end
        hist[cnt % size] = mnf
        count[t] = cnt + 1
    elif end - i[d, I_LAST_NORMAL] > p[Q_RELEARN_MIN] * NS_PER_MIN:
        # a new normal after relearn_days of alarm (a demand shift, or a leak left running)
        hist[cnt % size] = mnf
        count[t] = cnt + 1
