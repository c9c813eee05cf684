"""The water network model: DMAs with demand, leakage and hydraulics.

Each DMA (district metered area) is fed through one inlet:

    source reservoir --(headloss k_in * Q^2)--> inlet meter (flow Q, pressure H_in)
        --(headloss k_zone * Q^2, elevation)--> pressure points pz-1, pz-2...
    Q = customer demand + background leakage + injected leaks and bursts

Demand follows a diurnal curve (night minimum near 03:00, morning and evening
peaks) and a weekly one (Sundays lower), times slow AR(1) noise. Leaks ramp
from 0 to their rate over `ramp_s` (0 is abrupt); a burst is an abrupt, large
leak. Because inflow and pressures are computed from the same Q, a leak raises
the inlet flow and lowers every pressure in its DMA consistently.

The model steps in fixed ticks of sim time, so its state at a given sim time
depends only on the seed and that time, never on when it was read.

    WaterModel(settings: ModelSettings)      .advance_to(t_sim_s)   .dma(i) -> DmaState
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

DAY_S = 86_400.0


@dataclasses.dataclass(frozen=True, slots=True)
class LeakSpec:
    """A leak (ramping over `ramp_s`, 0 for abrupt) or a burst in DMA `dma` (1-based)."""

    dma: int
    at_s: float  # sim seconds after the start
    rate_lps: float
    ramp_s: float = 0.0
    kind: str = "leak"  # leak | burst

    def rate(self, t: float) -> float:
        if t < self.at_s:
            return 0.0
        if self.ramp_s <= 0:
            return self.rate_lps
        return self.rate_lps * min(1.0, (t - self.at_s) / self.ramp_s)


@dataclasses.dataclass(frozen=True, slots=True)
class ModelSettings:
    dmas: int = 1
    seed: int = 1
    start_epoch_s: float = 1_764_288_000.0  # 2025-11-28 00:00 UTC: fixed so runs repeat
    tick_s: float = 1.0
    base_demand_lps: float = 20.0  # mean customer demand of one DMA
    background_leak_lps: float = 1.5
    source_head_m: float = 60.0
    k_inlet: float = 0.008  # m per (L/s)^2 upstream of the inlet
    k_zone: float = 0.006  # m per (L/s)^2 from the inlet to the zone points
    noise: float = 0.04  # relative demand noise
    leaks: tuple[LeakSpec, ...] = ()
    amr_per_dma: int = 0

    def __post_init__(self) -> None:
        if self.dmas < 1 or self.tick_s <= 0:
            raise ValueError("dmas must be >= 1 and tick_s > 0")
        for leak in self.leaks:
            if not 1 <= leak.dma <= self.dmas:
                raise ValueError(f"leak in DMA {leak.dma}, but there are {self.dmas} DMAs")


def diurnal(hour: float) -> float:
    """Demand multiplier by local hour: mean about 1, night minimum about 0.35."""
    morning = 0.9 * math.exp(-(((hour - 7.5) / 1.6) ** 2))
    evening = 0.6 * math.exp(-(((hour - 19.5) / 2.0) ** 2))
    midday = 0.3 * math.exp(-(((hour - 13.0) / 3.0) ** 2))
    # the day's base use comes on around 06:00 and goes off around 23:00; summed over
    # thousands of homes it ramps over an hour or so, it never steps
    day = 0.25 / ((1 + math.exp((6.0 - hour) / 0.25)) * (1 + math.exp((hour - 23.0) / 0.25)))
    return 0.35 + morning + evening + midday + day


def weekly(day: int) -> float:
    """Demand multiplier by weekday (0 = Monday): Sundays lower, Saturdays a bit."""
    return {5: 0.95, 6: 0.88}.get(day, 1.0)


@dataclasses.dataclass(slots=True)
class DmaState:
    demand_lps: float = 0.0
    leak_lps: float = 0.0
    inflow_lps: float = 0.0
    inlet_head_m: float = 0.0
    zone_head_m: list[float] = dataclasses.field(default_factory=list)
    volume_l: float = 0.0  # inlet totaliser
    amr_volume_l: list[float] = dataclasses.field(default_factory=list)
    amr_share: list[float] = dataclasses.field(default_factory=list)
    noise: float = 0.0


class WaterModel:
    # local time is IST: the diurnal curve follows the city's clock, not UTC
    TZ_OFFSET_S = 5.5 * 3600

    def __init__(self, settings: ModelSettings, zone_points: int = 2) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        self.t = 0.0  # sim seconds since the start
        self.ticks = 0
        self.zone_points = zone_points
        self.dmas: list[DmaState] = []
        # per-DMA elevation of each zone point below the inlet, fixed for the seed
        self.elevation = self.rng.uniform(2.0, 8.0, (settings.dmas, zone_points))
        for i in range(settings.dmas):
            shares = self.rng.dirichlet(np.ones(max(settings.amr_per_dma, 1)) * 4)
            state = DmaState(
                zone_head_m=[0.0] * zone_points,
                volume_l=float(self.rng.uniform(1e6, 5e7)),
                amr_volume_l=[float(v) for v in self.rng.uniform(0, 9.99e7, settings.amr_per_dma)],
                amr_share=[0.02 * float(s) for s in shares[: settings.amr_per_dma]],
            )
            self.dmas.append(state)
            self._step(i, state, 0.0)  # the state at t = 0, without advancing

    def dma(self, index: int) -> DmaState:
        return self.dmas[index]

    def epoch_s(self) -> float:
        return self.settings.start_epoch_s + self.t

    def zone_head(self, dma: int, point: int) -> float:
        return self.dmas[dma].zone_head_m[point]

    def advance_to(self, t: float) -> None:
        """Step whole ticks up to sim time `t` (seconds since the start)."""
        dt = self.settings.tick_s
        while self.t + dt <= t:
            self.t += dt
            self.ticks += 1
            for i, state in enumerate(self.dmas):
                self._step(i, state, dt)

    def _demand_factor(self) -> float:
        local = self.epoch_s() + self.TZ_OFFSET_S
        hour = (local % DAY_S) / 3600.0
        day = int(local // DAY_S + 3) % 7  # 1970-01-01 was a Thursday (3)
        return diurnal(hour) * weekly(day)

    def _step(self, i: int, state: DmaState, dt: float) -> None:
        s = self.settings
        # AR(1) noise with a time constant of about 5 minutes of sim time
        alpha = math.exp(-dt / 300.0)
        if dt > 0:
            state.noise = alpha * state.noise + math.sqrt(1 - alpha**2) * float(
                self.rng.standard_normal()
            )
        state.demand_lps = max(
            0.0, s.base_demand_lps * self._demand_factor() * (1 + s.noise * state.noise)
        )
        state.leak_lps = s.background_leak_lps + sum(
            leak.rate(self.t) for leak in s.leaks if leak.dma == i + 1
        )
        self._hydraulics(i, state)
        state.volume_l += state.inflow_lps * dt
        for j, share in enumerate(state.amr_share):
            state.amr_volume_l[j] += state.demand_lps * share * dt

    def _hydraulics(self, i: int, state: DmaState) -> None:
        s = self.settings
        state.inflow_lps = state.demand_lps + state.leak_lps
        q2 = state.inflow_lps**2
        state.inlet_head_m = s.source_head_m - s.k_inlet * q2
        elev: Sequence[float] = self.elevation[i]
        state.zone_head_m = [
            state.inlet_head_m - s.k_zone * q2 * (1 + 0.5 * p) - float(elev[p])
            for p in range(self.zone_points)
        ]
