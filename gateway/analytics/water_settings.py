"""Settings of the water detectors: the DMAs, and thresholds with sensible defaults.

In the gateway TOML:

    [[dma]]
    name = "dma-01"
    inflow = ["dma-01/inlet/flow_lps"]        # summed
    outflow = []                               # subtracted
    pressure = ["dma-01/inlet/pressure_m", "dma-01/pz-1/pressure_m"]   # inlet first
    consumption = []                           # customer meters, when present
    interval_s = 0                             # reporting interval of its streams; 0 = learn
    intervals = { "dma-01/amr-1/flow_lps" = 3600 }   # per stream, over interval_s

    [water]                                    # optional; every key has a default
    timezone = "Asia/Kolkata"
    night_start = "02:00"
    night_end = "04:00"
    night_use_allowance_lps = 0.0
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from gateway.analytics import water_ingest as wi
from gateway.analytics import water_minutes as wm
from gateway.analytics.lifecycle import LifecycleSettings
from gateway.config import check_timezone
from gateway.streams import split_stream_name

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


_field = dataclasses.field  # (default, help) below reads as one line per key


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclasses.dataclass(frozen=True, slots=True)
class DmaSettings:
    """One district metered area: which streams measure what."""

    name: str
    inflow: tuple[str, ...] = ()
    outflow: tuple[str, ...] = ()
    pressure: tuple[str, ...] = ()
    consumption: tuple[str, ...] = ()
    interval_s: float = _field(
        default=0.0, metadata=_help("reporting interval of the DMA's streams; 0 = learn it")
    )
    intervals: dict[str, float] = dataclasses.field(
        default_factory=dict, metadata=_help("reporting interval per stream, in seconds")
    )

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError('a [[dma]] needs a name, e.g. name = "dma-01"')
        if not self.inflow:
            raise ValueError(f"dma {self.name!r} needs at least one inflow stream")
        if len(self.pressure) > wm.MAXP:
            raise ValueError(f"dma {self.name!r}: at most {wm.MAXP} pressure streams")
        names = self.streams()
        for name in names:
            split_stream_name(name)
        if len(set(names)) != len(names):
            raise ValueError(f"dma {self.name!r} lists a stream twice")
        if self.interval_s < 0 or any(v <= 0 for v in self.intervals.values()):
            raise ValueError(f"dma {self.name!r}: intervals are seconds > 0 (interval_s 0 = learn)")
        unknown = sorted(set(self.intervals) - set(names))
        if unknown:
            raise ValueError(
                f"dma {self.name!r}: intervals names streams it does not list: {unknown}"
            )

    def interval_of(self, stream: str) -> float:
        """The configured reporting interval of a stream in seconds, 0 = learn it."""
        return float(self.intervals.get(stream, self.interval_s))

    def streams(self) -> list[str]:
        return [*self.inflow, *self.outflow, *self.pressure, *self.consumption]


def _minutes(text: str, key: str) -> int:
    match = _HHMM.match(text)
    if not match:
        raise ValueError(f'{key} must be a local time "HH:MM", got {text!r}')
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclasses.dataclass(frozen=True, slots=True)
class WaterSettings:
    """Thresholds of the water detectors. Flows in L/s, pressures in m."""

    timezone: str = _field(
        default="Asia/Kolkata", metadata=_help("local time for the night window and the profile")
    )
    # (b) inflow against the learned time-of-week profile, into a CUSUM
    bin_minutes: int = _field(default=15, metadata=_help("width of a profile bin"))
    history: int = _field(default=8, metadata=_help("weeks (or days) of history per profile bin"))
    min_history: int = _field(default=4, metadata=_help("bins seen before the profile is trusted"))
    weekend: tuple[str, ...] = _field(
        default=("sat", "sun"),
        metadata=_help("days with their own profile until weeks are learned"),
    )
    demand_scale_hours: float = _field(
        default=12.0, metadata=_help("time constant of the demand-scale tracker; 0 = off")
    )
    floor_fraction: float = _field(
        default=0.1, metadata=_help("noise floor as a fraction of the expected flow")
    )
    floor_lps: float = _field(default=0.02, metadata=_help("absolute noise floor of flows"))
    cusum_k: float = _field(default=1.0, metadata=_help("CUSUM drift, in noise units"))
    cusum_h: float = _field(default=12.0, metadata=_help("CUSUM alarm level, in noise units"))
    cusum_clip: float = _field(
        default=3.0, metadata=_help("largest step one bin adds to the CUSUM, in noise units")
    )
    intercept_floor_fraction: float = _field(
        default=0.02, metadata=_help("noise floor of the daily leak level, x mean inflow")
    )
    intercept_z: float = _field(
        default=2.5, metadata=_help("leak level above its history, in noise units, scoring 0.5")
    )
    relearn_days: float = _field(
        default=3.0, metadata=_help("days of alarm after which the new level is learned")
    )
    # (a) minimum night flow
    night_start: str = _field(default="02:00", metadata=_help("local start of the night window"))
    night_end: str = _field(default="04:00", metadata=_help("local end of the night window"))
    night_history: int = _field(default=14, metadata=_help("nights in the night-flow baseline"))
    night_coverage: float = _field(
        default=0.8, metadata=_help("fraction of night minutes needed to judge a night")
    )
    night_z: float = _field(
        default=4.0, metadata=_help("night-flow excess, in noise units, that scores 0.5")
    )
    night_floor_fraction: float = _field(
        default=0.03, metadata=_help("night-flow noise floor as a fraction of its baseline")
    )
    night_use_allowance_lps: float = _field(
        default=0.0, metadata=_help("legitimate night use above the baseline")
    )
    # (e) bursts
    burst_k: float = _field(default=6.0, metadata=_help("step, in noise units, that scores 0.5"))
    burst_min_fraction: float = _field(
        default=0.12, metadata=_help("smallest burst as a fraction of mean inflow")
    )
    burst_min_lps: float = _field(default=0.5, metadata=_help("smallest burst in L/s"))
    burst_pressure_drop_m: float = _field(
        default=3.0, metadata=_help("smallest sudden pressure drop")
    )
    burst_track_hours: float = _field(
        default=6.0, metadata=_help("a burst older than this is left to the leak detectors")
    )
    # (d) pressure gradient and (c) mass balance
    gradient_floor_m: float = _field(
        default=0.2, metadata=_help("noise floor of inlet-to-point pressure differences")
    )
    gradient_h: float = _field(
        default=24.0, metadata=_help("CUSUM alarm level of the gradient residual")
    )
    balance_h: float = _field(
        default=12.0, metadata=_help("CUSUM alarm level of the mass-balance residual")
    )
    # (f) transients on fast pressure streams
    transient_min_hz: float = _field(
        default=100.0, metadata=_help("streams sampled at least this fast are watched")
    )
    transient_tau_s: float = _field(default=2.0, metadata=_help("baseline time constant"))
    transient_k: float = _field(
        default=6.0, metadata=_help("deviation, in noise units, that starts a transient")
    )
    transient_min_m: float = _field(default=1.0, metadata=_help("smallest transient"))
    transient_quiet_s: float = _field(
        default=1.0, metadata=_help("quiet time that ends a transient")
    )
    transient_max_s: float = _field(
        default=60.0, metadata=_help("a longer excursion is a new level, not a transient")
    )
    # sensor faults
    dropout_s: float = _field(
        default=600.0, metadata=_help("shortest silence that makes a dropout, in seconds")
    )
    dropout_intervals: float = _field(
        default=4.0, metadata=_help("a dropout is also at least this many reporting intervals")
    )
    stuck_s: float = _field(
        default=7200.0, metadata=_help("an exactly repeated value for this long is stuck")
    )
    stuck_eps: float = _field(default=0.0, metadata=_help("changes this small count as repeats"))
    spike_k: float = _field(
        default=12.0, metadata=_help("a one-sample jump this many typical steps is a spike")
    )
    spike_floor: float = _field(default=0.0, metadata=_help("and at least this large"))
    reverse_flow_lps: float = _field(
        default=0.05, metadata=_help("inflow below minus this is reverse flow")
    )
    # the gap rule (see gateway.analytics.water_ingest)
    grace_minutes: int = _field(
        default=1, metadata=_help("minutes a DMA minute waits for late readings")
    )
    gap_reset_hours: float = _field(
        default=6.0, metadata=_help("a longer silence resets short-term state")
    )
    baseline_max_age_days: float = _field(
        default=14.0, metadata=_help("a longer silence forgets the baselines")
    )
    clock_jump_hours: float = _field(
        default=6.0, metadata=_help("a reading this far behind restarts the timeline")
    )
    alerts: LifecycleSettings = dataclasses.field(default_factory=LifecycleSettings)

    def __post_init__(self) -> None:
        check_timezone(self.timezone)
        start = _minutes(self.night_start, "night_start")
        end = _minutes(self.night_end, "night_end")
        if end <= start:
            raise ValueError("night_end must be after night_start on the same night")
        unknown = [day for day in self.weekend if day not in _DAYS]
        if unknown:
            raise ValueError(f"weekend days must be among {', '.join(_DAYS)}, got {unknown}")
        if self.bin_minutes <= 0 or 1440 % self.bin_minutes:
            raise ValueError("bin_minutes must divide a day (5, 10, 15, 30, 60...)")
        if self.history < 1 or self.min_history < 1 or self.night_history < 3:
            raise ValueError("history and min_history >= 1, night_history >= 3")
        if not 0 < self.grace_minutes < wi.RING - 2:
            raise ValueError(f"grace_minutes must be between 1 and {wi.RING - 3}")
        for key in (
            "cusum_h",
            "gradient_h",
            "balance_h",
            "night_z",
            "burst_k",
            "burst_min_lps",
            "transient_k",
            "dropout_s",
            "dropout_intervals",
        ):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive")

    def ingest_params(self) -> np.ndarray:
        p = np.zeros(wi.N_INGEST_PARAMS)
        p[wi.P_DROPOUT_NS] = self.dropout_s * 1e9
        p[wi.P_STUCK_NS] = self.stuck_s * 1e9
        p[wi.P_STUCK_EPS] = self.stuck_eps
        p[wi.P_SPIKE_K] = self.spike_k
        p[wi.P_SPIKE_FLOOR] = self.spike_floor
        p[wi.P_TR_MIN_HZ] = self.transient_min_hz
        p[wi.P_TR_TAU_S] = self.transient_tau_s
        p[wi.P_TR_K] = self.transient_k
        p[wi.P_TR_MIN_M] = self.transient_min_m
        p[wi.P_TR_QUIET_NS] = self.transient_quiet_s * 1e9
        p[wi.P_TR_MAX_NS] = self.transient_max_s * 1e9
        p[wi.P_GRACE_MIN] = self.grace_minutes
        p[wi.P_GAP_RESET_MIN] = self.gap_reset_hours * 60
        p[wi.P_CLOCK_JUMP_MIN] = self.clock_jump_hours * 60
        p[wi.P_DROPOUT_K] = self.dropout_intervals
        return p

    def step_params(self) -> np.ndarray:
        p = np.zeros(wm.N_STEP_PARAMS)
        start = _minutes(self.night_start, "night_start")
        end = _minutes(self.night_end, "night_end")
        p[wm.Q_BIN_MIN] = self.bin_minutes
        p[wm.Q_HIST] = self.history
        p[wm.Q_MIN_HIST] = self.min_history
        p[wm.Q_SCALE_MIN] = self.demand_scale_hours * 60
        p[wm.Q_FLOOR_REL] = self.floor_fraction
        p[wm.Q_FLOOR_LPS] = self.floor_lps
        p[wm.Q_CUSUM_K] = self.cusum_k
        p[wm.Q_CUSUM_H] = self.cusum_h
        p[wm.Q_Z_CLIP] = self.cusum_clip
        p[wm.Q_IC_FLOOR] = self.intercept_floor_fraction
        p[wm.Q_IC_Z] = self.intercept_z
        p[wm.Q_RELEARN_MIN] = self.relearn_days * 1440
        p[wm.Q_NIGHT_START] = start
        p[wm.Q_NIGHT_END] = end
        p[wm.Q_NIGHT_HIST] = self.night_history
        p[wm.Q_NIGHT_MIN] = self.night_coverage * (end - start)
        p[wm.Q_NIGHT_Z] = self.night_z
        p[wm.Q_NIGHT_ALLOW] = self.night_use_allowance_lps
        p[wm.Q_NIGHT_FLOOR] = self.night_floor_fraction
        p[wm.Q_BURST_K] = self.burst_k
        p[wm.Q_BURST_FRAC] = self.burst_min_fraction
        p[wm.Q_BURST_LPS] = self.burst_min_lps
        p[wm.Q_BURST_DROP_M] = self.burst_pressure_drop_m
        p[wm.Q_BURST_TRACK_MIN] = self.burst_track_hours * 60
        p[wm.Q_DP_FLOOR_M] = self.gradient_floor_m
        p[wm.Q_DP_H] = self.gradient_h
        p[wm.Q_MB_H] = self.balance_h
        p[wm.Q_GAP_RESET_MIN] = self.gap_reset_hours * 60
        p[wm.Q_MAX_AGE_MIN] = self.baseline_max_age_days * 1440
        p[wm.Q_TZ_MIN] = 0  # set per batch from the timezone
        p[wm.Q_WEEKEND] = sum(1 << _DAYS.index(day) for day in self.weekend)
        return p
