"""The generic streaming anomaly detector: a score in [0, 1] for every sample of any stream.

Causal and online: each sample is scored from state learned on the samples before
it, then folded in. No global min/max, no look-ahead, no training pass. Many
streams share one detector; their state lives in arrays indexed by stream id, and
one numba loop scores a whole batch, so splitting a batch anywhere gives the same
scores.

    value ──► slow level + scale (EWMA, innovations clipped at `clip` scales)
          ──► z terms, each in "scales" (weight 0 = off; defaults in brackets):
                point   |x - level|                                   [off]
                shift   fast level vs slow level                      [off]
                scale   fast deviation / slow deviation - 1 (noisier) [0.9]
                calm    slow deviation / fast deviation - 1 (quieter) [1.2]
                mid     both of those at a medium memory              [0.5]
                diff    step size vs the usual step                   [off]
                range   beyond the highest/lowest value seen          [3.0]
                season  vs this time of day's (or week's) median      [off]
          ──► r = (max of weighted z)^2, smoothed: r_short
          ──► against q, an online high quantile (q_level) of r_short for this
              stream, floored at 0.5: score = min(1, 2 (r_short - q) / (r_short + q)),
              0 when r_short <= q
          ──► after a score >= `alarm`, the next `hold` samples are capped at `hold_cap`

Comparing against the stream's own running quantile is what makes one threshold
work across streams as different as Twitter volumes and a flat CPU metric: a
stream that is always noisy raises its own bar. The damping after an alarm turns a
long excursion into one alarm, not hundreds.

Bad input, and the gap rule:

- NaN / ±inf: scored 0, not learned.
- A timestamp earlier than the stream's latest: scored from the current state,
  not learned (a late or replayed sample cannot rewrite the past). An equal
  timestamp (a duplicate) is an ordinary sample.
- A gap longer than `gap_reset_s` seconds *and* longer than `gap_factor` times the
  stream's typical interval (an EWMA of the intervals seen, so a daily series is
  not reset daily) resets the short-term state (fast level and deviation, recent
  surprise, damping), forgets the previous value, and scores the next `rewarm`
  samples 0 while learning. The slow level, scale, range and time-of-day profile
  are kept, so a meter that was off for days neither alarms on the gap itself
  nor forgets what it learned.
- A flat stream (for example all zeros): scales have a floor of
  1e-9 + 1e-6 |level|, so nothing divides by zero; the first change after a flat
  stretch scores high once, through the range term.
- A stream id outside the state arrays is scored 0 and learned nowhere.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from gateway.analytics.kernels import NO_TS, NS_PER_S, _jit, robust_step

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
T = TypeVar("T", int, float)

# State columns of `st` (float64[n_streams, N_STATE]).
_N = 0  # samples learned since the start or the last gap reset (the warm-up counter)
_LEVEL = 1  # slow level
_SCALE = 2  # slow scale: mean absolute deviation from the slow level (clipped)
_FAST = 3  # fast level (kept only while the point or shift term is on)
_FAST_DEV = 4  # fast mean absolute deviation from the slow level (clipped)
_R_SHORT = 5  # recent (smoothed) squared surprise
_R_Q = 6  # online high quantile of _R_SHORT
_HOLD = 7  # samples left in the damping after an alarm
_DT = 8  # typical interval between samples, seconds
_PREV = 9  # previous value (NaN after a gap reset; kept only while the diff term is on)
_DIFF_SCALE = 10  # mean absolute first difference (ditto)
_HI = 11  # highest value seen (optionally decaying toward the level)
_LO = 12  # lowest value seen
_MID_DEV = 13  # mean absolute deviation from the slow level, medium memory
N_STATE = 14

# Parameter vector (float64[N_PARAMS]) built by AnomalySettings.vector().
P_ALPHA_SLOW = 0
P_ALPHA_FAST = 1
P_CLIP = 2
P_ALPHA_R = 3
P_Q_LEVEL = 4
P_Q_RATE = 5
P_WARMUP = 6
P_ALARM = 7
P_HOLD = 8
P_HOLD_CAP = 9
P_GAP_S = 10
P_GAP_FACTOR = 11
P_REWARM = 12
P_W_POINT = 13
P_W_SHIFT = 14
P_W_SCALE = 15
P_W_CALM = 16
P_W_DIFF = 17
P_W_RANGE = 18
P_RANGE_TOL = 19
P_RANGE_DECAY = 20
P_W_SEASON = 21
P_SEASON_NS = 22
P_SEASON_MAX_N = 23
P_ALPHA_MID = 24
P_W_MID = 25
N_PARAMS = 26


def _field(default: T, help_: str) -> T:
    field: T = dataclasses.field(default=default, metadata={"help": help_})
    return field


@dataclasses.dataclass(frozen=True, slots=True)
class AnomalySettings:
    """Knobs of the generic detector. One set serves every stream; the defaults were
    tuned once on the whole NAB corpus (`python -m bench.nab run`), never per file."""

    alpha_slow: float = _field(0.002, "EWMA weight of the slow level and scale")
    alpha_fast: float = _field(0.05, "EWMA weight of the fast level and deviation")
    clip: float = _field(8.0, "innovations beyond this many scales are clipped when learning")
    alpha_r: float = _field(0.4, "EWMA weight of the recent surprise")
    q_level: float = _field(0.98, "quantile of the recent surprise taken as normal")
    q_rate: float = _field(0.02, "learning rate of that quantile, relative to its size")
    warmup: int = _field(150, "samples learned before any score above 0")
    alarm: float = _field(0.4, "score at which the damping starts")
    hold: int = _field(40, "samples damped after an alarm")
    hold_cap: float = _field(0.0, "the highest score while damped")
    gap_reset_s: float = _field(86_400.0, "a gap longer than this (s) resets short-term state")
    gap_factor: float = _field(50.0, "...when also this many times the typical interval")
    rewarm: int = _field(30, "samples scored 0 after a gap reset")
    w_point: float = _field(0.0, "weight of the point term")
    w_shift: float = _field(0.0, "weight of the level-shift term")
    w_scale: float = _field(0.9, "weight of the scale-rise term")
    w_calm: float = _field(1.2, "weight of the scale-drop term")
    alpha_mid: float = _field(0.0125, "EWMA weight of the medium-memory deviation")
    w_mid: float = _field(0.5, "weight of the medium-memory scale-rise and scale-drop terms")
    w_diff: float = _field(0.0, "weight of the step-size term")
    w_range: float = _field(3.0, "weight of the beyond-range term")
    range_tol: float = _field(0.05, "excess over the range seen, as a fraction of it, = z 3")
    range_decay: float = _field(0.0, "per-sample decay of the range toward the level")
    w_season: float = _field(0.0, "weight of the time-of-day (or of-week) term")
    season_days: int = _field(1, "the season: 1 (time of day) or 7 (time of week)")
    season_bins: int = _field(0, "bins per season; 0 turns the term off")
    season_max_n: float = _field(20.0, "memory of each bin, in samples")

    def __post_init__(self) -> None:
        for name in ("alpha_slow", "alpha_fast", "alpha_mid", "alpha_r", "q_rate"):
            a = getattr(self, name)
            if not 0.0 < a <= 1.0:
                raise ValueError(f"anomaly.{name} must be in (0, 1], got {a}")
        if not 0.0 < self.q_level < 1.0:
            raise ValueError(f"anomaly.q_level must be in (0, 1), got {self.q_level}")
        period = 86_400 * self.season_days
        if (
            self.season_days < 1
            or self.season_bins < 0
            or (self.season_bins and period % self.season_bins)
        ):
            raise ValueError(
                f"anomaly.season_bins must be 0 or divide {period} (s per season), "
                f"got {self.season_bins}"
            )
        if self.range_tol <= 0.0:
            raise ValueError(f"anomaly.range_tol must be > 0, got {self.range_tol}")
        for name in ("warmup", "hold", "rewarm", "clip", "gap_reset_s", "gap_factor"):
            if getattr(self, name) < 0:
                raise ValueError(f"anomaly.{name} must be >= 0, got {getattr(self, name)}")

    def vector(self) -> F64:
        """The settings as the parameter vector the kernel reads."""
        p = np.zeros(N_PARAMS, np.float64)
        p[P_ALPHA_SLOW] = self.alpha_slow
        p[P_ALPHA_FAST] = self.alpha_fast
        p[P_CLIP] = self.clip
        p[P_ALPHA_R] = self.alpha_r
        p[P_Q_LEVEL] = self.q_level
        p[P_Q_RATE] = self.q_rate
        p[P_WARMUP] = self.warmup
        p[P_ALARM] = self.alarm
        p[P_HOLD] = self.hold
        p[P_HOLD_CAP] = self.hold_cap
        p[P_GAP_S] = self.gap_reset_s
        p[P_GAP_FACTOR] = self.gap_factor
        p[P_REWARM] = self.rewarm
        p[P_W_POINT] = self.w_point
        p[P_W_SHIFT] = self.w_shift
        p[P_W_SCALE] = self.w_scale
        p[P_W_CALM] = self.w_calm
        p[P_W_DIFF] = self.w_diff
        p[P_W_RANGE] = self.w_range
        p[P_RANGE_TOL] = self.range_tol
        p[P_RANGE_DECAY] = self.range_decay
        p[P_W_SEASON] = self.w_season
        period_ns = 86_400 * NS_PER_S * self.season_days
        p[P_SEASON_NS] = period_ns // self.season_bins if self.season_bins else 0
        p[P_SEASON_MAX_N] = self.season_max_n
        p[P_ALPHA_MID] = self.alpha_mid
        p[P_W_MID] = self.w_mid
        return p


@_jit
def _first_sample(st: F64, s: int, x: float) -> None:
    st[s, _N] = 1.0
    st[s, _LEVEL] = x
    st[s, _FAST] = x
    st[s, _PREV] = x
    st[s, _HI] = x
    st[s, _LO] = x


@_jit
def _gap_reset(st: F64, s: int, warmup: float, rewarm: float) -> None:
    st[s, _FAST] = st[s, _LEVEL]
    st[s, _FAST_DEV] = st[s, _SCALE]
    st[s, _MID_DEV] = st[s, _SCALE]
    st[s, _R_SHORT] = 0.0
    st[s, _HOLD] = 0.0
    st[s, _PREV] = np.nan
    # Score 0 for the next `rewarm` samples (or less, if still in the first warm-up).
    st[s, _N] = max(0.0, min(st[s, _N], warmup) - rewarm)


@_jit
def _adult_n(a_slow: float) -> float:
    """An n from which on 1.0 / n <= a_slow (inf if none): there max(a_slow, 1.0 / n)
    is a_slow, bit for bit, since the rounded 1.0 / n never rises as n grows."""
    if not a_slow > 0.0:
        return np.inf
    n = np.ceil(1.0 / a_slow)
    while 1.0 / n > a_slow:  # at most a few steps: 1.0 / n is off by rounding only
        n = np.nextafter(n, np.inf)
    return float(n)


@_jit
def anomaly_scores(  # noqa: PLR0917 - numba has no keyword-only arguments
    ts: I64,
    stream: I32,
    value: F64,
    p: F64,
    st: F64,
    last_ts: I64,
    season: F64,
    out: F64,
) -> None:
    """Score every sample into `out` (float64 in [0, 1]) and learn from it.

    `p` is `AnomalySettings.vector()`. State, all updated in place:
    `st` float64[n_streams, N_STATE] (columns named at the top of this module),
    `last_ts` int64[n_streams] (NO_TS before a stream's first sample), and
    `season` float64[n_streams, season_bins, 4], the per-bin median/MAD state of
    `kernels.robust_step` (shape (n_streams, 0, 4) when the term is off).
    """
    n_streams = st.shape[0]
    n_bins = season.shape[1]
    # Parameters as locals: the loop writes to arrays, so numba cannot hoist loads of p.
    a_slow = p[P_ALPHA_SLOW]
    alarm = p[P_ALARM]
    alpha_mid = p[P_ALPHA_MID]
    alpha_r = p[P_ALPHA_R]
    gap_factor = p[P_GAP_FACTOR]
    gap_s = p[P_GAP_S]
    hold = p[P_HOLD]
    hold_cap = p[P_HOLD_CAP]
    q_level = p[P_Q_LEVEL]
    q_rate = p[P_Q_RATE]
    range_decay = p[P_RANGE_DECAY]
    rewarm = p[P_REWARM]
    warmup = p[P_WARMUP]
    w_calm = p[P_W_CALM]
    w_diff = p[P_W_DIFF]
    w_mid = p[P_W_MID]
    w_point = p[P_W_POINT]
    range_k = p[P_W_RANGE] * 3.0 / p[P_RANGE_TOL]
    season_max_n = p[P_SEASON_MAX_N]
    w_scale = p[P_W_SCALE]
    w_season = p[P_W_SEASON]
    w_shift = p[P_W_SHIFT]
    a_fast = p[P_ALPHA_FAST]
    clip = p[P_CLIP]
    shift_sd = math.sqrt(a_fast / (2.0 - a_fast))  # sd of an EWMA of unit-sd noise
    season_ns = np.int64(p[P_SEASON_NS])
    adult_n = _adult_n(a_slow)
    # The fast level feeds only the point and shift terms, the previous value and the
    # step scale only the diff term: with those off, their state is not kept.
    use_fast = w_point > 0.0 or w_shift > 0.0
    use_diff = w_diff > 0.0
    for i in range(value.shape[0]):
        s = stream[i]
        x = value[i]
        if s < 0 or s >= n_streams or not np.isfinite(x):
            out[i] = 0.0
            continue
        t = ts[i]
        t0 = last_ts[s]
        if t0 == NO_TS:
            _first_sample(st, s, x)
            last_ts[s] = t
            out[i] = 0.0
            continue
        learn = t >= t0
        if t > t0:
            dt = (t - t0) * 1e-9  # seconds
            typical = st[s, _DT]
            if dt > gap_s and typical > 0.0 and dt > gap_factor * typical:
                _gap_reset(st, s, warmup, rewarm)
            elif typical == 0.0:
                st[s, _DT] = dt
            elif dt != typical:  # at dt == typical the update is a no-op
                # Clipped, so one long gap does not redefine "typical".
                st[s, _DT] = typical + 0.01 * (min(dt, 10.0 * typical) - typical)
            last_ts[s] = t

        n = st[s, _N]
        level = st[s, _LEVEL]
        floor = 1e-9 + 1e-6 * abs(level)
        scale = max(st[s, _SCALE], floor)
        sigma = 1.25 * scale  # mean absolute deviation -> sd, for a normal
        dev = x - level

        # --- z terms, all from the state before this sample
        fast = 0.0
        if use_fast:
            fast = st[s, _FAST] + a_fast * (x - st[s, _FAST])
        fdev = st[s, _FAST_DEV] + a_fast * (min(abs(dev), clip * sigma) - st[s, _FAST_DEV])
        mdev = st[s, _MID_DEV] + alpha_mid * (min(abs(dev), clip * sigma) - st[s, _MID_DEV])
        hi = st[s, _HI]
        lo = st[s, _LO]
        excess = 0.0
        if x > hi or x < lo:
            excess = max(x - hi, lo - x) / max(hi - lo, floor)
        inv_scale = 1.0 / scale  # one division instead of four
        zm = max(
            w_scale * (fdev * inv_scale - 1.0),
            w_calm * (scale / max(fdev, floor) - 1.0),
            w_mid * (mdev * inv_scale - 1.0),
            w_mid * (scale / max(mdev, floor) - 1.0),
            range_k * excess,
        )
        if use_fast:
            zm = max(
                zm,
                w_point * abs(dev) * inv_scale / 1.25,
                w_shift * abs(fast - level) * inv_scale / (1.25 * shift_sd),
            )
        diff = 0.0
        diff_ok = False  # False right after a gap reset, as prev is NaN then
        if use_diff:
            diff = abs(x - st[s, _PREV])
            diff_ok = np.isfinite(diff)
            if diff_ok:
                zm = max(zm, w_diff * diff / (1.25 * max(st[s, _DIFF_SCALE], floor)))
        b = 0
        if n_bins > 0:
            b = int((t // season_ns) % n_bins)  # numpy-style floor mod: >= 0
            if season[s, b, 2] >= 4.0:
                mad = 1.4826 * max(season[s, b, 1], floor)
                zm = max(zm, w_season * abs(x - season[s, b, 0]) / mad)
        r = zm * zm
        r_short = st[s, _R_SHORT] + alpha_r * (r - st[s, _R_SHORT])

        # --- the recent surprise against this stream's own high quantile of it
        q = st[s, _R_Q]
        bar = max(q, 0.5)  # z^2 of 0.7: below that nothing is news, however quiet the stream
        score = 0.0
        if n >= warmup:
            if r_short > bar:
                score = min(1.0, 2.0 * (r_short - bar) / (r_short + bar))
            if st[s, _HOLD] > 0.0:
                score = min(score, hold_cap)
                if learn:
                    st[s, _HOLD] -= 1.0
            elif score >= alarm and learn:
                st[s, _HOLD] = hold
        out[i] = score
        if not learn:
            continue

        # --- learn
        n += 1.0
        st[s, _N] = n
        a = a_slow if n >= adult_n else max(a_slow, 1.0 / n)  # running means while young
        st[s, _LEVEL] = level + a * max(-clip * sigma, min(clip * sigma, dev))
        st[s, _SCALE] = st[s, _SCALE] + a * (min(abs(dev), clip * sigma) - st[s, _SCALE])
        if use_fast:
            st[s, _FAST] = fast
        st[s, _FAST_DEV] = fdev
        st[s, _MID_DEV] = mdev
        if use_diff:
            if diff_ok:
                ds = st[s, _DIFF_SCALE]
                st[s, _DIFF_SCALE] = ds + a * (min(diff, clip * 1.25 * max(ds, floor)) - ds)
            st[s, _PREV] = x
        decay = range_decay
        st[s, _HI] = max(x, hi - decay * (hi - level))
        st[s, _LO] = min(x, lo + decay * (level - lo))
        st[s, _R_SHORT] = r_short
        # Stochastic-approximation quantile: up by (1 - level) when exceeded, down by
        # level otherwise; steps scale with q so any stream's units work.
        step = q_rate * max(q, 0.1)
        st[s, _R_Q] = q + step * (q_level - (1.0 if r_short <= q else 0.0))
        if n_bins > 0:
            robust_step(season, s, b, x, season_max_n)


class AnomalyDetector:
    """Scores samples of many streams, keeping each stream's state between calls.

    `AnomalyDetector(n_streams, settings=None)`; `score(ts, stream, value)` returns
    one float64 score in [0, 1] per sample, in input order. Stream ids are
    0..n_streams-1 (a `StreamRegistry`'s ids); `grow(n)` makes room for more streams
    without touching the others, `reset(stream)` forgets one.
    """

    def __init__(self, n_streams: int, settings: AnomalySettings | None = None) -> None:
        self.settings = settings or AnomalySettings()
        self._p = self.settings.vector()
        self._n_bins = int(self.settings.season_bins)
        self._st = np.zeros((0, N_STATE), np.float64)
        self._last = np.zeros(0, np.int64)
        self._season = np.zeros((0, self._n_bins, 4), np.float64)
        self.grow(n_streams)

    @property
    def n_streams(self) -> int:
        return int(self._st.shape[0])

    def grow(self, n_streams: int) -> None:
        old = self.n_streams
        if n_streams <= old:
            return
        st = np.zeros((n_streams, N_STATE), np.float64)
        st[:old] = self._st
        last = np.full(n_streams, NO_TS, np.int64)
        last[:old] = self._last
        season = np.zeros((n_streams, self._n_bins, 4), np.float64)
        season[:old] = self._season
        self._st, self._last, self._season = st, last, season

    def reset(self, stream: int) -> None:
        """Forget everything learned about one stream."""
        self._st[stream] = 0.0
        self._last[stream] = NO_TS
        self._season[stream] = 0.0

    def score(self, ts: I64, stream: I32, value: F64) -> F64:
        """Scores in [0, 1], one per sample, in input order; learns from the samples."""
        out = np.empty(len(value), np.float64)
        anomaly_scores(
            np.ascontiguousarray(ts, np.int64),
            np.ascontiguousarray(stream, np.int32),
            np.ascontiguousarray(value, np.float64),
            self._p,
            self._st,
            self._last,
            self._season,
            out,
        )
        return out


def warm_up() -> None:
    """Compile the detector kernel (the runtime calls this at start)."""
    det = AnomalyDetector(1, AnomalySettings(season_bins=24, w_season=1.0))
    det.score(np.array([0, NS_PER_S], np.int64), np.zeros(2, np.int32), np.array([1.0, 2.0]))
