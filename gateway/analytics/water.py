"""Water detectors per DMA: leaks, bursts, transients and sensor faults, as a runtime Stage.

    Bundle.readings --+--> kernels.aggregate ---------------------------> 1-minute AggregateBatch
                      |
                      +--> ingest_rows --> DMA minute rows --> step_minutes --> scores --+
                                     \\--> sample events (gap, stuck, spike, transient) --+
                                                                                          v
                                                      AlertTracker (hysteresis, dedup) --> alerts

What each detector watches (thresholds in `WaterSettings`):

- leak / night_flow: the mean inflow 02:00-04:00 local against the median of
  the last `night_history` normal nights.
- leak / inflow_cusum: each 15-minute inflow bin against the median of the
  same bin in past weeks (past days until there are enough weeks), scaled by a
  slowly tracked demand factor, fed into a one-sided CUSUM.
- leak / mass_balance: inflow - outflow - consumption against its own level.
- leak evidence or sensor_fault / drift: the inlet-to-point pressure
  difference against its profile (a rise with a leak is evidence; a rise with
  normal inflow is a drifting gauge).
- burst: a held step up in the inflow residual or down in a pressure, within
  `burst` minutes.
- transient: on pressure streams at >= 100 Hz, onset within a sample of the
  crossing, with its peak in metres.
- sensor_fault: stuck, spike, dropout, reverse_flow, drift.

Alerts carry data time only. The same readings give the same alerts whatever
the batch size (the kernels work row by row in order; see the gap rule in
`gateway.analytics.water_kernels`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import zoneinfo
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import kernels
from gateway.analytics import water_kernels as wk
from gateway.analytics.lifecycle import AlertTracker
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.batch import AggregateBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert
from gateway.logs import get_logger
from gateway.streams import StreamRegistry

log = get_logger("gateway.analytics.water")

NS_PER_MIN = wk.NS_PER_MIN
_ROLES = (
    ("inflow", wk.INFLOW),
    ("outflow", wk.OUTFLOW),
    ("pressure", wk.PRESSURE),
    ("consumption", wk.CONSUMPTION),
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Layout:
    """Where each DMA's streams sit in the kernels' slot arrays."""

    slot_stream: NDArray[np.int32]  # stream id of each slot
    slot_dma: NDArray[np.int32]
    slot_role: NDArray[np.int32]
    dma_ptr: NDArray[np.int64]  # slots of DMA d are dma_slots[dma_ptr[d]:dma_ptr[d + 1]]
    dma_slots: NDArray[np.int64]
    max_local: int

    def stream_index(self, n_streams: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """CSR map stream id -> slots (a stream may serve several DMAs)."""
        order = np.argsort(self.slot_stream, kind="stable")
        counts = np.bincount(self.slot_stream, minlength=n_streams)
        ptr = np.zeros(n_streams + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        return ptr, order.astype(np.int64)


def _layout(registry: StreamRegistry, dmas: Sequence[DmaSettings]) -> _Layout:
    stream, dma, role = [], [], []
    ptr = [0]
    for d, cfg in enumerate(dmas):
        for attr, code in _ROLES:
            for name in getattr(cfg, attr):
                stream.append(registry.register(name))
                dma.append(d)
                role.append(code)
        ptr.append(len(stream))
    widths = np.diff(ptr)
    return _Layout(
        np.asarray(stream, np.int32),
        np.asarray(dma, np.int32),
        np.asarray(role, np.int32),
        np.asarray(ptr, np.int64),
        np.arange(len(stream), dtype=np.int64),
        int(widths.max()) if len(widths) else 1,
    )


class WaterDetectors:
    """The water Stage: `process(bundle)` adds 1-minute aggregates and alerts.

    `WaterDetectors(registry, dmas, settings=WaterSettings())`. Stream names in
    `dmas` are registered in `registry`. State lives here, across batches.
    """

    def __init__(
        self,
        registry: StreamRegistry,
        dmas: Sequence[DmaSettings],
        settings: WaterSettings | None = None,
    ) -> None:
        names = [d.name for d in dmas]
        if len(set(names)) != len(names):
            raise ValueError(f"DMA names must be unique, got {names}")
        self.registry = registry
        self.dmas = list(dmas)
        self.settings = settings or WaterSettings()
        self.tracker = AlertTracker(self.settings.alerts)
        self._tz = zoneinfo.ZoneInfo(self.settings.timezone)
        self._layout = _layout(registry, self.dmas)
        self._ingest_p = self.settings.ingest_params()
        self._step_p = self.settings.step_params()
        n_slots, n_dma = len(self._layout.slot_stream), len(self.dmas)
        self._si, self._sf, self._ring, self._ring_min, self._di, self.counters = (
            wk.new_ingest_state(n_slots, n_dma)
        )
        s = self.settings
        self._step = wk.StepState(max(n_dma, 1), s.bin_minutes, s.history, s.night_history)
        self._agg_si, self._agg_sf = kernels.new_aggregate_state(len(registry))
        # per DMA, spans (from, until) in which an inflow meter was stuck or silent: leak and
        # burst scores there are the meter's fault, not the network's
        self._suspect: list[list[tuple[int, float]]] = [[] for _ in self.dmas]
        self._level_score = np.zeros(max(len(self.dmas), 1))  # latest inflow-level score
        self._watermark = 0  # newest data time seen in any DMA stream
        self._first = 0
        self._build_matrices()

    # ------------------------------------------------------------------ layout
    def _build_matrices(self) -> None:
        lay = self._layout
        n_dma, width = len(self.dmas), lay.max_local
        self._n_pres = np.zeros(max(n_dma, 1), np.int64)
        # signed weights from a DMA's local slot values to Q (and C), and pressure columns
        self._q_w = np.zeros((max(n_dma, 1), width))
        self._c_w = np.zeros((max(n_dma, 1), width))
        self._has_c = np.zeros(max(n_dma, 1), bool)
        self._p_col = np.full((max(n_dma, 1), wk.MAXP), -1, np.int64)
        self._slot_name: list[str] = []
        for s in range(len(lay.slot_stream)):
            d, role = int(lay.slot_dma[s]), int(lay.slot_role[s])
            local = s - int(lay.dma_ptr[d])
            self._slot_name.append(self.registry.name_of(int(lay.slot_stream[s])))
            if role == wk.INFLOW:
                self._q_w[d, local] = 1.0
            elif role == wk.OUTFLOW:
                self._q_w[d, local] = -1.0
            elif role == wk.PRESSURE:
                self._p_col[d, self._n_pres[d]] = local
                self._n_pres[d] += 1
            else:
                self._c_w[d, local] = 1.0
                self._has_c[d] = True

    def _grow(self) -> None:
        n = len(self.registry)
        have = self._agg_si.shape[0]
        if n > have:
            si, sf = kernels.new_aggregate_state(n)
            si[:have], sf[:have] = self._agg_si, self._agg_sf
            self._agg_si, self._agg_sf = si, sf

    # ------------------------------------------------------------------ stage
    def process(self, bundle: Bundle) -> Bundle:
        readings = bundle.readings
        if not len(readings):
            return bundle
        readings = readings.sorted_by_time()
        aggregates = self._aggregate(readings)
        alerts = self.observe(readings)
        if not len(aggregates) and not alerts:
            return bundle
        return dataclasses.replace(
            bundle,
            aggregates=AggregateBatch.concat(
                [b for b in (bundle.aggregates, aggregates) if len(b)]
            ),
            alerts=bundle.alerts + tuple(alerts),
        )

    def _aggregate(self, r: ReadingBatch) -> AggregateBatch:
        self._grow()
        n = len(r)
        out_ts = np.empty(n, np.int64)
        out_stream = np.empty(n, np.int32)
        out_count = np.empty(n, np.int32)
        out_f = np.empty((n, 5), np.float64)
        value = np.where(r.quality & 15, np.nan, r.value)
        k = kernels.aggregate(
            r.ts,
            r.stream,
            value,
            NS_PER_MIN,
            self._agg_si,
            self._agg_sf,
            out_ts,
            out_stream,
            out_count,
            out_f,
        )
        return AggregateBatch(
            out_ts[:k],
            out_stream[:k],
            out_count[:k],
            out_f[:k, 0].copy(),
            out_f[:k, 1].copy(),
            out_f[:k, 2].copy(),
            out_f[:k, 3].copy(),
            out_f[:k, 4].copy(),
        )

    def observe(self, r: ReadingBatch) -> list[Alert]:
        """Run the detectors over readings (sorted by ts); return alert transitions."""
        lay = self._layout
        if not len(lay.slot_stream) or not len(r):
            return []
        slot_ptr, slot_list = lay.stream_index(max(len(self.registry), int(r.stream.max()) + 1))
        self._step_p[wk.Q_TZ_MIN] = self._tz_minutes(int(r.ts[-1]))
        n_dma = len(self.dmas)
        cap = max(4096, (wk.N_SF + 8) * n_dma)
        alerts: list[Alert] = []
        start = 0
        while start < len(r):
            out_dma = np.empty(cap, np.int32)
            out_min = np.empty(cap, np.int64)
            out_gap = np.empty(cap, np.int8)
            out_vals = np.empty((cap, lay.max_local))
            ev = [np.empty(cap, t) for t in (np.int32, np.int32, np.int64, np.int64)]
            evf = [np.empty(cap), np.empty(cap)]
            start, n_out, n_ev = wk.ingest_rows(
                r.ts,
                r.stream,
                r.value,
                r.quality,
                start,
                slot_ptr,
                slot_list,
                lay.slot_dma,
                lay.slot_role,
                lay.dma_ptr,
                lay.dma_slots,
                self._ingest_p,
                self._si,
                self._sf,
                self._ring,
                self._ring_min,
                self._di,
                self.counters,
                out_dma,
                out_min,
                out_gap,
                out_vals,
                *ev,
                *evf,
            )
            alerts += self._events([*ev, *evf], n_ev)
            alerts += self._minutes(
                out_dma[:n_out], out_min[:n_out], out_gap[:n_out], out_vals[:n_out]
            )
        self._watermark = max(self._watermark, int(self._di[:, wk.DI_WATERMARK].max()))
        if self._first == 0:
            self._first = int(r.ts[0])
        alerts += self._silent_streams()
        alerts += self.tracker.expire(self._watermark)
        return alerts

    def _tz_minutes(self, ts_ns: int) -> int:
        """The local offset at this data time (per batch: exact for fixed-offset zones)."""
        when = dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC)
        offset = self._tz.utcoffset(when.replace(tzinfo=None))
        return int(offset.total_seconds() // 60) if offset else 0

    # ------------------------------------------------------------------ minutes
    def _minutes(
        self,
        dma: NDArray[np.int32],
        minute: NDArray[np.int64],
        gap: NDArray[np.int8],
        vals: NDArray[np.float64],
    ) -> list[Alert]:
        if not len(dma):
            return []
        qw, cw = self._q_w[dma], self._c_w[dma]
        q = np.where(qw != 0, vals * qw, 0.0).sum(axis=1)  # NaN when any inflow is missing
        c = np.where(cw != 0, vals * cw, 0.0).sum(axis=1)
        c[~self._has_c[dma]] = np.nan
        pres = np.full((len(dma), wk.MAXP), np.nan)
        cols = self._p_col[dma]
        rows = np.arange(len(dma))
        for j in range(wk.MAXP):
            ok = cols[:, j] >= 0
            pres[ok, j] = vals[rows[ok], cols[ok, j]]
        out = np.empty((len(dma), wk.N_O))
        outi = np.empty((len(dma), wk.N_OI), np.int64)
        st = self._step
        wk.step_minutes(
            dma, minute, gap, q, pres, self._n_pres, c, self._step_p, *st.arrays(), out, outi
        )
        return self._minute_alerts(dma, minute, vals, out, outi)

    def _minute_alerts(
        self,
        dma: NDArray[np.int32],
        minute: NDArray[np.int64],
        vals: NDArray[np.float64],
        out: NDArray[np.float64],
        outi: NDArray[np.int64],
    ) -> list[Alert]:
        floor = min(
            p.clear_score
            for p in (*self.settings.alerts.kinds.values(), self.settings.alerts.default)
        )
        scores = out[:, [wk.O_BURST, wk.O_CUSUM, wk.O_MNF, wk.O_DP, wk.O_MB, wk.O_IC]]
        hot = np.nan_to_num(scores, nan=0.0).max(axis=1) >= floor
        inflow_local = self._q_w[dma] > 0
        reverse = (np.nan_to_num(vals, nan=0.0) < -self.settings.reverse_flow_lps) & inflow_local
        alerts: list[Alert] = []
        level = np.isfinite(out[:, wk.O_IC])  # tracked for every bin, hot or not
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
            o[[wk.O_BURST, wk.O_CUSUM, wk.O_MNF, wk.O_MB, wk.O_IC]] = np.nan
        if o[wk.O_BURST] > 0:
            point = self._pressure_name(d, int(oi[wk.OI_BURST_POINT]))
            ev: dict[str, Any] = {"detectors": ["burst"]}
            if math.isfinite(o[wk.O_BURST_DROP]):
                ev["pressure_drop_m"] = round(float(o[wk.O_BURST_DROP]), 3)
                ev["pressure_point"] = point
            if math.isfinite(o[wk.O_BURST_MAG]):
                ev["inflow_step_lps"] = round(float(o[wk.O_BURST_MAG]), 3)
            alerts += obs(
                "burst",
                name,
                at,
                float(o[wk.O_BURST]),
                magnitude=float(o[wk.O_BURST_MAG]),
                started_at=int(oi[wk.OI_BURST_START]),
                evidence=ev,
                message=f"sudden inflow step or pressure drop in {name}",
            )
        if np.isfinite(o[wk.O_IC]):
            self._level_score[d] = o[wk.O_IC]
        if o[wk.O_IC] > 0:
            alerts += obs(
                "leak",
                name,
                at,
                float(o[wk.O_IC]),
                magnitude=float(o[wk.O_IC_MAG]),
                started_at=int(oi[wk.OI_IC_START]),
                evidence={
                    "detectors": ["inflow_level"],
                    "level_excess_lps": round(float(o[wk.O_IC_MAG]), 4),
                },
                message=f"a constant extra inflow to {name}, day and night",
            )
        open_leak = self.tracker.get("leak", name)
        if o[wk.O_CUSUM] > 0 and open_leak is not None:
            # the profile CUSUM reacts to hot days too: evidence for an open leak, not an alarm
            alerts += obs(
                "leak",
                name,
                at,
                min(float(o[wk.O_CUSUM]), open_leak.score),
                magnitude=float(o[wk.O_CUSUM_MAG]),
                started_at=int(oi[wk.OI_CUSUM_START]),
                evidence={
                    "detectors": ["inflow_cusum"],
                    "profile_excess_lps": round(float(o[wk.O_CUSUM_MAG]), 4),
                },
                message=f"inflow to {name} above its usual profile",
            )
        if o[wk.O_MNF] > 0:
            # a higher night flow alone may be a warm night or new customers; it opens a
            # leak only when the day's inflow level agrees (a leak adds flow day and night)
            alerts += obs(
                "leak",
                name,
                at,
                min(float(o[wk.O_MNF]), self._level_score[d] + 0.25),
                magnitude=float(o[wk.O_MNF_MAG]),
                started_at=int(oi[wk.OI_MNF_START]),
                evidence={
                    "detectors": ["night_flow"],
                    "night_flow_lps": round(float(o[wk.O_MNF_VAL]), 4),
                    "night_baseline_lps": round(float(o[wk.O_MNF_BASE]), 4),
                },
                message=f"minimum night flow of {name} above its history",
            )
        if o[wk.O_MB] > 0:
            alerts += obs(
                "leak",
                name,
                at,
                float(o[wk.O_MB]),
                magnitude=float(o[wk.O_MB_MAG]),
                started_at=int(oi[wk.OI_MB_START]),
                evidence={
                    "detectors": ["mass_balance"],
                    "unaccounted_lps": round(float(o[wk.O_MB_MAG]), 4),
                },
                message=f"inflow to {name} exceeds metered consumption",
            )
        if o[wk.O_DP] > 0:
            point = self._pressure_name(d, int(oi[wk.OI_DP_POINT]))
            residual = round(float(o[wk.O_DP_MAG]), 3)
            leak = self.tracker.get("leak", name)
            if leak is not None:
                alerts += obs(
                    "leak",
                    name,
                    at,
                    min(float(o[wk.O_DP]), leak.score),
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
                    float(o[wk.O_DP]),
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
        col = int(self._p_col[d, j]) if 0 <= j < wk.MAXP else -1
        if col < 0:
            return ""
        return self._slot_name[int(self._layout.dma_ptr[d]) + col]

    # ------------------------------------------------------------------ sample events
    def _events(self, columns: Sequence[NDArray[Any]], n: int) -> list[Alert]:
        kind, slot, t0, t1, v0, v1 = (c[:n] for c in columns)
        alerts: list[Alert] = []
        obs = self.tracker.observe
        dropout_ns = round(self.settings.dropout_s * 1e9)
        for e in range(len(kind)):
            k, name = int(kind[e]), self._slot_name[int(slot[e])]
            a, b = int(t0[e]), int(t1[e])
            self._note_suspect(int(slot[e]), k, a, b)
            if k == wk.EV_GAP:
                alerts += obs(
                    "sensor_fault",
                    name,
                    a + dropout_ns,
                    1.0,
                    subkey="dropout",
                    held=True,
                    started_at=a,
                    evidence={"fault": "dropout"},
                    message=f"no readings from {name}",
                )
                alerts += self.tracker.clear("sensor_fault", name, b, subkey="dropout")
            elif k == wk.EV_STUCK_ON:
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
            elif k == wk.EV_STUCK_OFF:
                alerts += self.tracker.clear("sensor_fault", name, b, subkey="stuck")
            elif k == wk.EV_SPIKE:
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
            elif k in (wk.EV_TRANSIENT_ON, wk.EV_TRANSIENT_OFF):
                alerts += self._transient(k, name, onset=a, at=b, dev=float(v0[e]))
        return alerts

    def _note_suspect(self, slot: int, kind: int, t0: int, t1: int) -> None:
        """Remember when an inflow meter of a DMA could not be trusted."""
        lay = self._layout
        if lay.slot_role[slot] not in (wk.INFLOW, wk.OUTFLOW):
            return
        spans = self._suspect[int(lay.slot_dma[slot])]
        # the profile bins and a burst followed from the fault hold it this long
        after = max(2.0, self.settings.burst_track_hours) * 3600 * 1e9
        if kind == wk.EV_STUCK_ON:
            spans.append((t1, math.inf))
        elif kind == wk.EV_STUCK_OFF and spans and spans[-1][1] == math.inf:
            spans[-1] = (spans[-1][0], t1 + after)
        elif kind == wk.EV_GAP:
            spans.append((t1, t1 + after))
        del spans[:-8]

    def _transient(self, k: int, stream: str, *, onset: int, at: int, dev: float) -> list[Alert]:
        asset = stream.rpartition("/")[0]
        stat = abs(dev) / self.settings.transient_min_m
        score = stat / (1.0 + stat)
        evidence = {"stream": stream, "peak_m": round(dev, 3)}
        if k == wk.EV_TRANSIENT_ON:
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

    def _silent_streams(self) -> list[Alert]:
        """Streams silent for dropout_s while others advance, including ones never seen."""
        dropout_ns = round(self.settings.dropout_s * 1e9)
        last = self._si[:, wk.SI_LAST_TS]
        since = np.where(last > 0, last, self._first)
        alerts: list[Alert] = []
        for s in np.flatnonzero(self._watermark - since > dropout_ns):
            name = self._slot_name[int(s)]
            if self.tracker.get("sensor_fault", name, "dropout") is None:
                alerts += self.tracker.observe(
                    "sensor_fault",
                    name,
                    int(since[s]) + dropout_ns,
                    1.0,
                    subkey="dropout",
                    held=True,
                    started_at=int(since[s]),
                    evidence={"fault": "dropout"},
                    message=f"no readings from {name}",
                )
        return alerts
