"""What each DMA's reporting intervals allow its detectors, said once at start.

The detectors work from DMA minute rows (see the cadence rule in
`gateway.analytics.water_ingest`). A stream slower than a minute has its readings
spread over the minutes they cover, so every detector runs at any interval, at
the resolution the data has. When a DMA's streams have all reported twice (or
have configured intervals), one `water.cadence` log line names each detector
that runs coarser than it was built for, and how. It is said again only when
the DMA's slowest interval changes by half or more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import water_ingest as wi
from gateway.analytics import water_minutes as wm
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.logs import get_logger

log = get_logger("gateway.analytics.water")


def cadence_notes(
    settings: WaterSettings, names: Sequence[str], roles: Sequence[int], iv_s: Sequence[float]
) -> list[str]:
    """How the detectors of one DMA degrade at these intervals (s) of its streams."""
    slowest = max(iv_s)
    notes: list[str] = []
    if slowest >= wi.FILL_MIN_S:
        lag = min(int(np.ceil(slowest / 60)), wi.MAX_LAG)
        notes.append(f"alerts wait {lag} min for the slowest stream")
    if slowest > wm.BURST_AFTER * 60:
        notes.append(f"burst: judged at {slowest / 60:g}-minute resolution, not minutes")
    if slowest > settings.bin_minutes * 60:
        notes.append(f"inflow profile and CUSUM: {settings.bin_minutes}-minute bins share readings")
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (settings.night_start, settings.night_end))
    per_night = (end - start) * 60 / slowest
    if per_night < 8:
        notes.append(f"night_flow: {per_night:g} readings a night window")
    for name, iv in zip(names, iv_s, strict=True):
        if iv > wi.MAX_LAG * 60:
            notes.append(
                f"{name}: every {iv / 60:g} min is too coarse; each reading covers only "
                f"the {wi.MAX_LAG} minutes before it"
            )
    fast = [iv for iv, role in zip(iv_s, roles, strict=True) if role == wi.PRESSURE]
    if not fast or min(fast) > 1.0 / settings.transient_min_hz:
        notes.append(
            f"transient: off (needs a pressure stream at >= {settings.transient_min_hz:g} Hz)"
        )
    return notes


class CadenceReport:
    """Logs each DMA's cadence and degraded detectors once, when its intervals are known."""

    def __init__(
        self,
        dmas: Sequence[DmaSettings],
        settings: WaterSettings,
        slot_name: Sequence[str],
        slot_dma: NDArray[np.int32],
        slot_role: NDArray[np.int32],
    ) -> None:
        self.dmas = list(dmas)
        self.settings = settings
        self._slot_name = list(slot_name)
        self._slot_dma = slot_dma
        self._slot_role = slot_role
        self._said = np.zeros(max(len(self.dmas), 1))  # slowest interval last reported, s
        self.notes: dict[str, list[str]] = {}  # per DMA, what was last said

    def report(self, iv_ns: NDArray[np.float64], lag: NDArray[np.int64]) -> None:
        """Say, once per DMA, how its detectors run at the intervals learned so far."""
        for d, dma in enumerate(self.dmas):
            slots = np.flatnonzero(self._slot_dma == d)
            iv = iv_ns[slots] / 1e9
            if not len(slots) or (iv <= 0).any():
                continue
            slowest = float(iv.max())
            said = self._said[d]
            if said > 0 and 2 / 3 < slowest / said < 1.5:
                continue
            self._said[d] = slowest
            names = [self._slot_name[s] for s in slots]
            notes = cadence_notes(
                self.settings, names, self._slot_role[slots].tolist(), iv.tolist()
            )
            self.notes[dma.name] = notes
            log.info(
                "water.cadence",
                dma=dma.name,
                intervals_s=",".join(f"{n}={v:g}" for n, v in zip(names, iv.tolist(), strict=True)),
                lag_min=int(lag[d]),
                degraded="; ".join(notes) or "none",
            )
