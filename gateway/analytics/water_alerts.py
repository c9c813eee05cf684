"""From kernel outputs to alerts: the water detectors' scores and sample events,
judged into de-duplicated alerts by the `AlertTracker`.

Kinds and assets: `leak` and `burst` on the DMA (evidence names the detectors
that agree: inflow_level, night_flow, mass_balance, inflow_cusum,
pressure_gradient); `transient` on the pressure point's asset; `sensor_fault` on
the stream, with `evidence["fault"]` one of stuck, spike, dropout, drift,
reverse_flow. Leak and burst scores are ignored while an inflow meter of the
DMA is stuck or silent, and for `burst_track_hours` after.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import water_ingest as wi
from gateway.analytics import water_minutes as wm
from gateway.analytics.lifecycle import AlertTracker
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.events import Alert

NS_PER_MIN = wi.NS_PER_MIN
CUSUM_LEVEL_LEAD = 0.25  # how far the profile CUSUM may lead the inflow-level score
ADDITIVE_SHARE = 0.7  # share of the CUSUM's excess that must be constant for it to open alone


class SlotLayout(Protocol):
    """Where each DMA's streams sit in the kernels' slot arrays (read-only)."""

    @property
    def slot_dma(self) -> NDArray[np.int32]: ...
    @property
    def slot_role(self) -> NDArray[np.int32]: ...
    @property
    def dma_ptr(self) -> NDArray[np.int64]: ...


class WaterAlerts:
    """Alert transitions from minute scores and sample events, per DMA."""

    def __init__(
        self,
        dmas: Sequence[DmaSettings],
        settings: WaterSettings,
        tracker: AlertTracker,
        layout: SlotLayout,
        slot_name: Sequence[str],
        *,
        q_w: NDArray[np.float64],
        p_col: NDArray[np.int64],
    ) -> None:
        self.dmas = list(dmas)
        self.settings = settings
        self.tracker = tracker
        self._layout = layout
        self._slot_name = list(slot_name)
        self._q_w = q_w
        self._p_col = p_col
        # per DMA, spans (from, until) in which an inflow meter was stuck or silent: leak and
        # burst scores there are the meter's fault, not the network's
        self._suspect: list[list[tuple[int, float]]] = [[] for _ in self.dmas]
        self._level_score = np.zeros(max(len(self.dmas), 1))  # latest inflow-level score

    def minute_alerts(
        self,
        dma: NDArray[np.int32],
        minute: NDArray[np.int64],
        vals: NDArray[np.float64],
        out: NDArray[np.float64],
        outi: NDArray[np.int64],
    ) -> list[Alert]:
        """Alerts of DMA minute rows; `minute` is when each row was known (its minute
        plus the DMA's lag for slow streams), so alerts carry that data time."""
        floor = min(
            p.clear_score
            for p in (*self.settings.alerts.kinds.values(), self.settings.alerts.default)
        )
        scores = out[:, [wm.O_BURST, wm.O_CUSUM, wm.O_MNF, wm.O_DP, wm.O_MB, wm.O_IC]]
        hot = np.nan_to_num(scores, nan=0.0).max(axis=1) >= floor
        inflow_local = self._q_w[dma] > 0
        reverse = (np.nan_to_num(vals, nan=0.0) < -self.settings.reverse_flow_lps) & inflow_local
        alerts: list[Alert] = []
        level = np.isfinite(out[:, wm.O_IC])  # tracked for every bin, hot or not
        for k in np.flatnonzero(hot | level | reverse.any(axis=1)):
            alerts += self._minute_row(
                int(dma[k]), int(minute[k]), vals=vals[k], o=out[k], oi=outi[k], reverse=reverse[k]
            )
        return alerts

    def _minute_row(
        self,
        d: int,
        m: int,
        *,
        vals: NDArray[np.float64],
        o: NDArray[np.float64],
        oi: NDArray[np.int64],
        reverse: NDArray[np.bool_],
    ) -> list[Alert]:
        name = self.dmas[d].name
        at = (m + 1) * NS_PER_MIN
        obs = self.tracker.observe
        alerts: list[Alert] = []
        if any(start <= at <= until for start, until in self._suspect[d]):
            o = o.copy()
            o[[wm.O_BURST, wm.O_CUSUM, wm.O_MNF, wm.O_MB, wm.O_IC]] = np.nan
        if o[wm.O_BURST] > 0:
            point = self._pressure_name(d, int(oi[wm.OI_BURST_POINT]))
            ev: dict[str, Any] = {"detectors": ["burst"]}
            if math.isfinite(o[wm.O_BURST_DROP]):
                ev["pressure_drop_m"] = round(float(o[wm.O_BURST_DROP]), 3)
                ev["pressure_point"] = point
            if math.isfinite(o[wm.O_BURST_MAG]):
                ev["inflow_step_lps"] = round(float(o[wm.O_BURST_MAG]), 3)
            alerts += obs(
                "burst",
                name,
                at,
                float(o[wm.O_BURST]),
                magnitude=float(o[wm.O_BURST_MAG]),
                started_at=int(oi[wm.OI_BURST_START]),
                evidence=ev,
                message=f"sudden inflow step or pressure drop in {name}",
            )
        if np.isfinite(o[wm.O_IC]):
            self._level_score[d] = o[wm.O_IC]
        if o[wm.O_IC] > 0:
            alerts += obs(
                "leak",
                name,
                at,
                float(o[wm.O_IC]),
                magnitude=float(o[wm.O_IC_MAG]),
                started_at=int(oi[wm.OI_IC_START]),
                evidence={
                    "detectors": ["inflow_level"],
                    "level_excess_lps": round(float(o[wm.O_IC_MAG]), 4),
                },
                message=f"a constant extra inflow to {name}, day and night",
            )
        open_leak = self.tracker.get("leak", name)
        if o[wm.O_CUSUM] > 0:
            # the profile CUSUM reacts to hot days too: it opens a leak only when the day's
            # inflow level leans the same way, else it is evidence for an open one
            # or when most of its excess is a constant L/s, at night as by day
            cap = (
                open_leak.score
                if open_leak is not None
                else self._level_score[d] + CUSUM_LEVEL_LEAD
            )
            additive = float(o[wm.O_CUSUM_ADD])
            if open_leak is None and additive >= ADDITIVE_SHARE * float(o[wm.O_CUSUM_MAG]) > 0:
                cap = 1.0
            alerts += obs(
                "leak",
                name,
                at,
                min(float(o[wm.O_CUSUM]), cap),
                magnitude=float(o[wm.O_CUSUM_MAG]),
                started_at=int(oi[wm.OI_CUSUM_START]),
                evidence={
                    "detectors": ["inflow_cusum"],
                    "profile_excess_lps": round(float(o[wm.O_CUSUM_MAG]), 4),
                },
                message=f"inflow to {name} above its usual profile",
            )
        if o[wm.O_MNF] > 0:
            # a higher night flow alone may be a warm night or new customers; it opens a
            # leak only when the day's inflow level agrees (a leak adds flow day and night)
            alerts += obs(
                "leak",
                name,
                at,
                min(float(o[wm.O_MNF]), self._level_score[d] + 0.25),
                magnitude=float(o[wm.O_MNF_MAG]),
                started_at=int(oi[wm.OI_MNF_START]),
                evidence={
                    "detectors": ["night_flow"],
                    "night_flow_lps": round(float(o[wm.O_MNF_VAL]), 4),
                    "night_baseline_lps": round(float(o[wm.O_MNF_BASE]), 4),
                },
                message=f"minimum night flow of {name} above its history",
            )
        if o[wm.O_MB] > 0:
            alerts += obs(
                "leak",
                name,
                at,
                float(o[wm.O_MB]),
                magnitude=float(o[wm.O_MB_MAG]),
                started_at=int(oi[wm.OI_MB_START]),
                evidence={
                    "detectors": ["mass_balance"],
                    "unaccounted_lps": round(float(o[wm.O_MB_MAG]), 4),
                },
                message=f"inflow to {name} exceeds metered consumption",
            )
        if o[wm.O_DP] > 0:
            point = self._pressure_name(d, int(oi[wm.OI_DP_POINT]))
            residual = round(float(o[wm.O_DP_MAG]), 3)
            leak = self.tracker.get("leak", name)
            if leak is not None:
                alerts += obs(
                    "leak",
                    name,
                    at,
                    min(float(o[wm.O_DP]), leak.score),
                    evidence={
                        "detectors": ["pressure_gradient"],
                        "gradient_point": point,
                        "gradient_residual_m": residual,
                    },
                )
            else:
                alerts += obs(
                    "sensor_fault",
                    point,
                    at,
                    float(o[wm.O_DP]),
                    magnitude=residual,
                    subkey="drift",
                    evidence={"fault": "drift", "residual_m": residual},
                    message=f"{point} drifts from the inlet with normal inflow",
                )
        for local in np.flatnonzero(reverse):
            stream = self._slot_name[int(self._layout.dma_ptr[d]) + int(local)]
            alerts += obs(
                "sensor_fault",
                stream,
                at,
                0.6,
                magnitude=float(vals[local]),
                subkey="reverse_flow",
                evidence={"fault": "reverse_flow"},
                message=f"{stream} reads reverse flow",
            )
        return alerts

    def _pressure_name(self, d: int, j: int) -> str:
        col = int(self._p_col[d, j]) if 0 <= j < wm.MAXP else -1
        if col < 0:
            return ""
        return self._slot_name[int(self._layout.dma_ptr[d]) + col]

    # ------------------------------------------------------------------ sample events
    def events(self, columns: Sequence[NDArray[Any]], n: int) -> list[Alert]:
        kind, slot, t0, t1, v0, v1 = (c[:n] for c in columns)
        alerts: list[Alert] = []
        obs = self.tracker.observe
        for e in range(len(kind)):
            k, name = int(kind[e]), self._slot_name[int(slot[e])]
            a, b = int(t0[e]), int(t1[e])
            self._note_suspect(int(slot[e]), k, a, b)
            if k == wi.EV_GAP:
                alerts += obs(
                    "sensor_fault",
                    name,
                    a + int(v0[e]),  # the silence that made it a dropout
                    1.0,
                    subkey="dropout",
                    held=True,
                    started_at=a,
                    evidence={"fault": "dropout"},
                    message=f"no readings from {name}",
                )
                alerts += self.tracker.clear("sensor_fault", name, b, subkey="dropout")
            elif k == wi.EV_STUCK_ON:
                value = float(v0[e])
                alerts += obs(
                    "sensor_fault",
                    name,
                    b,
                    0.8,
                    subkey="stuck",
                    held=True,
                    started_at=a,
                    magnitude=value,
                    evidence={"fault": "stuck", "value": value, "flat_zero": value == 0.0},
                    message=f"{name} repeats {value:g}",
                )
            elif k == wi.EV_STUCK_OFF:
                alerts += self.tracker.clear("sensor_fault", name, b, subkey="stuck")
            elif k == wi.EV_SPIKE:
                alerts += obs(
                    "sensor_fault",
                    name,
                    b,
                    0.6,
                    subkey="spike",
                    started_at=a,
                    magnitude=float(v1[e]),
                    evidence={"fault": "spike", "value": float(v0[e])},
                    message=f"{name} spiked by {float(v1[e]):g}",
                )
            elif k in (wi.EV_TRANSIENT_ON, wi.EV_TRANSIENT_OFF):
                alerts += self._transient(k, name, onset=a, at=b, dev=float(v0[e]))
        return alerts

    def _note_suspect(self, slot: int, kind: int, t0: int, t1: int) -> None:
        """Remember when an inflow meter of a DMA could not be trusted."""
        lay = self._layout
        if lay.slot_role[slot] not in (wi.INFLOW, wi.OUTFLOW):
            return
        spans = self._suspect[int(lay.slot_dma[slot])]
        if kind == wi.EV_STUCK_ON:
            spans.append((t1, math.inf))
        elif kind == wi.EV_STUCK_OFF and spans and spans[-1][1] == math.inf:
            # the jump off the stuck value looks like a burst, and is followed as one
            # for up to burst_track_hours; the profile bins hold the stuck value as long
            after = max(2.0, self.settings.burst_track_hours) * 3600 * 1e9
            spans[-1] = (spans[-1][0], t1 + after)
        elif kind == wi.EV_GAP:
            # a silence leaves no false step (the windows skip missing minutes), only
            # burst windows that are not yet full of data from after it; a longer hold
            # after every radio blip would blind the DMA to a real burst for hours
            spans.append((t1, t1 + (wm.BURST_AFTER + wm.BURST_BEFORE) * NS_PER_MIN))
        del spans[:-8]

    def _transient(self, k: int, stream: str, *, onset: int, at: int, dev: float) -> list[Alert]:
        asset = stream.rpartition("/")[0]
        stat = abs(dev) / self.settings.transient_min_m
        score = stat / (1.0 + stat)
        evidence = {"stream": stream, "peak_m": round(dev, 3)}
        if k == wi.EV_TRANSIENT_ON:
            return self.tracker.observe(
                "transient",
                asset,
                at,
                max(score, 0.5),
                magnitude=abs(dev),
                started_at=onset,
                evidence=evidence,
                held=True,
                message=f"pressure transient at {asset}",
            )
        out = self.tracker.observe(
            "transient",
            asset,
            at,
            score,
            magnitude=abs(dev),
            evidence={**evidence, "duration_s": (at - onset) / 1e9},
        )
        return out + self.tracker.clear("transient", asset, at)

    def silent_streams(
        self, last: NDArray[np.int64], dropout_ns: NDArray[np.int64], first: int, watermark: int
    ) -> list[Alert]:
        """Streams silent for their dropout time while others advance, including ones
        never seen; `dropout_ns` per slot (see `WaterDetectors.dropout_after`)."""
        since = np.where(last > 0, last, first)
        alerts: list[Alert] = []
        for s in np.flatnonzero(last > 0):
            # back before the kernel judged the silence a dropout (a slow stream's
            # first gap, before its interval was known): the alert ends here
            name = self._slot_name[int(s)]
            open_ = self.tracker.get("sensor_fault", name, "dropout")
            if open_ is not None and open_.started_at is not None and last[s] > open_.started_at:
                alerts += self.tracker.clear("sensor_fault", name, int(last[s]), subkey="dropout")
        for s in np.flatnonzero(watermark - since > dropout_ns):
            name = self._slot_name[int(s)]
            if self.tracker.get("sensor_fault", name, "dropout") is None:
                alerts += self.tracker.observe(
                    "sensor_fault",
                    name,
                    int(since[s] + dropout_ns[s]),
                    1.0,
                    subkey="dropout",
                    held=True,
                    started_at=int(since[s]),
                    evidence={"fault": "dropout"},
                    message=f"no readings from {name}",
                )
        return alerts
