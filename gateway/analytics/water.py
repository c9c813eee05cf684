"""Water detectors per DMA: leaks, bursts, transients and sensor faults, as a runtime Stage.

    Bundle.readings -----> ingest_rows --> DMA minute rows --> step_minutes --> scores --+
                                     \\--> sample events (gap, stuck, spike, transient) --+
                                                                                          v
                                                      AlertTracker (hysteresis, dedup) --> alerts

What each detector watches (thresholds in `WaterSettings`):

- leak / inflow_level: the last day of 15-minute inflow bins fitted as
  `a_day x profile + L` (one demand scale per local day absorbs weather and
  demand shifts; a leak is the constant L), L against its own daily history.
- leak / night_flow: the mean inflow 02:00-04:00 local against past nights of
  the same day type; it opens a leak only when the inflow level agrees.
- leak / mass_balance: inflow - outflow - consumption against its own level.
- leak / inflow_cusum: each bin against the learned time-of-week profile
  (time of day per day type until weeks are learned), times a tracked demand
  scale, into a one-sided CUSUM. It reacts to hot days as well, so it opens a
  leak only when most of its excess is a constant L/s across night and day
  bins (a hot day scales with demand) or the inflow level leans the same way;
  else it adds evidence and an earlier start to an open leak.
- sensor_fault / drift (or leak evidence): the inlet-to-point pressure loss
  against its fitted curve c + k x flow^1.85, two-sided CUSUM.
- burst: an abrupt, held step up in the inflow residual or down in a pressure
  against its learned time-of-day profile (raw pressure until one is learned),
  opened 5 minutes after the step. A step is judged against the spread of the
  test's own statistic over the last days, scaled with the expected flow (and
  flow^1.85 for pressures), so correlated demand noise at the morning peak and
  the daily pressure swing raise no alarm.
- transient: on pressure streams at >= 100 Hz, onset within a sample of the
  crossing, with its peak in metres.
- sensor_fault: stuck, spike, dropout, reverse_flow, drift. Leak and burst
  scores are ignored while an inflow meter is stuck or silent.

Streams may report at any interval from 1 s to about an hour, each its own,
learned or configured (`[[dma]] interval_s`, `intervals`): see the cadence rule
in `gateway.analytics.water_ingest`; `water_cadence` logs once per DMA which
detectors then run coarser. Alerts carry data time only. The same readings give
the same alerts whatever the batch size (the kernels work row by row in order;
see the gap rule in `gateway.analytics.water_ingest`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import water_ingest as wi
from gateway.analytics import water_minutes as wm
from gateway.analytics.lifecycle import AlertTracker
from gateway.analytics.water_alerts import WaterAlerts
from gateway.analytics.water_cadence import CadenceReport
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert
from gateway.logs import get_logger
from gateway.parts import Wiring
from gateway.streams import StreamRegistry

log = get_logger("gateway.analytics.water")

NS_PER_MIN = wi.NS_PER_MIN
_ROLES = (
    ("inflow", wi.INFLOW),
    ("outflow", wi.OUTFLOW),
    ("pressure", wi.PRESSURE),
    ("consumption", wi.CONSUMPTION),
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
    """The water Stage: `process(bundle)` adds the DMAs' alerts.

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
        configured = np.asarray(
            [self.dmas[int(d)].interval_of(registry.name_of(int(sid)))
             for sid, d in zip(self._layout.slot_stream, self._layout.slot_dma, strict=True)],
            np.float64,
        )  # fmt: skip
        self._si, self._sf, self._ring, self._ring_min, self._di, self.counters = (
            wi.new_ingest_state(
                n_slots, n_dma, configured, self._layout.slot_dma, self._layout.slot_role
            )
        )
        s = self.settings
        self._step = wm.StepState(max(n_dma, 1), s.bin_minutes, s.history, s.night_history)
        self._watermark = 0  # newest data time seen in any DMA stream
        self._first = 0
        self._build_matrices()
        self._alerts = WaterAlerts(
            self.dmas, self.settings, self.tracker, self._layout, self._slot_name,
            q_w=self._q_w, p_col=self._p_col,
        )  # fmt: skip
        self.cadence = CadenceReport(
            self.dmas, self.settings, self._slot_name, self._layout.slot_dma,
            self._layout.slot_role,
        )  # fmt: skip

    @classmethod
    def create(
        cls, wiring: Wiring, dmas: Sequence[DmaSettings], settings: WaterSettings
    ) -> WaterDetectors:
        return cls(wiring.registry, dmas, settings)

    @staticmethod
    def warm_up() -> None:
        warm_up()

    # ------------------------------------------------------------------ layout
    def _build_matrices(self) -> None:
        lay = self._layout
        n_dma, width = len(self.dmas), lay.max_local
        self._n_pres = np.zeros(max(n_dma, 1), np.int64)
        # signed weights from a DMA's local slot values to Q (and C), and pressure columns
        self._q_w = np.zeros((max(n_dma, 1), width))
        self._c_w = np.zeros((max(n_dma, 1), width))
        self._has_c = np.zeros(max(n_dma, 1), bool)
        self._p_col = np.full((max(n_dma, 1), wm.MAXP), -1, np.int64)
        self._slot_name: list[str] = []
        for s in range(len(lay.slot_stream)):
            d, role = int(lay.slot_dma[s]), int(lay.slot_role[s])
            local = s - int(lay.dma_ptr[d])
            self._slot_name.append(self.registry.name_of(int(lay.slot_stream[s])))
            if role == wi.INFLOW:
                self._q_w[d, local] = 1.0
            elif role == wi.OUTFLOW:
                self._q_w[d, local] = -1.0
            elif role == wi.PRESSURE:
                self._p_col[d, self._n_pres[d]] = local
                self._n_pres[d] += 1
            else:
                self._c_w[d, local] = 1.0
                self._has_c[d] = True

    # ------------------------------------------------------------------ stage
    def process(self, bundle: Bundle) -> Bundle:
        readings = bundle.readings
        if not len(readings):
            return bundle
        alerts = self.observe(readings.sorted_by_time())
        if not alerts:
            return bundle
        return dataclasses.replace(bundle, alerts=bundle.alerts + tuple(alerts))

    def observe(self, r: ReadingBatch) -> list[Alert]:
        """Run the detectors over readings (sorted by ts); return alert transitions."""
        lay = self._layout
        if not len(lay.slot_stream) or not len(r):
            return []
        slot_ptr, slot_list = lay.stream_index(max(len(self.registry), int(r.stream.max()) + 1))
        self._step_p[wm.Q_TZ_MIN] = self._tz_minutes(int(r.ts[-1]))
        n_dma = len(self.dmas)
        # the kernel reserves room for a full catch-up of every DMA per row
        gap_reset = int(self._ingest_p[wi.P_GAP_RESET_MIN])
        cap = max(4096, 2 * (gap_reset + self.settings.grace_minutes + 3) * n_dma)
        alerts: list[Alert] = []
        start = 0
        while start < len(r):
            out_dma = np.empty(cap, np.int32)
            out_min = np.empty(cap, np.int64)
            out_gap = np.empty(cap, np.int8)
            out_lag = np.empty(cap, np.int64)
            out_vals = np.empty((cap, lay.max_local))
            ev = [np.empty(cap, t) for t in (np.int32, np.int32, np.int64, np.int64)]
            evf = [np.empty(cap), np.empty(cap)]
            start, n_out, n_ev = wi.ingest_rows(
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
                out_lag,
                out_vals,
                *ev,
                *evf,
            )
            alerts += self._alerts.events([*ev, *evf], n_ev)
            alerts += self._minutes(
                out_dma[:n_out], out_min[:n_out], out_gap[:n_out], out_lag[:n_out],
                out_vals[:n_out],
            )  # fmt: skip
        self._watermark = max(self._watermark, int(self._di[:, wi.DI_WATERMARK].max()))
        if self._first == 0:
            self._first = int(r.ts[0])
        last_ts = self._si[:, wi.SI_LAST_TS]
        alerts += self._alerts.silent_streams(
            last_ts, self.dropout_after(), self._first, self._watermark
        )
        self.cadence.report(self._sf[:, wi.SF_IV], self._di[:, wi.DI_LAG])
        alerts += self.tracker.expire(self._watermark)
        return alerts

    def intervals_s(self) -> dict[str, float]:
        """Each DMA stream's reporting interval in seconds, learned or configured (0 = not yet)."""
        iv = self._sf[:, wi.SF_IV] / 1e9
        return {self._slot_name[s]: float(iv[s]) for s in range(len(self._slot_name))}

    def dropout_after(self) -> NDArray[np.int64]:
        """Per slot, the silence in ns that makes a dropout: at least `dropout_s` and
        `dropout_intervals` reporting intervals. A stream seen once has no interval yet
        and is given an hour's; one never seen, its DMA's slowest learned interval."""
        s = self.settings
        iv = self._sf[:, wi.SF_IV]
        slowest = np.zeros(max(len(self.dmas), 1))
        np.maximum.at(slowest, self._layout.slot_dma, iv)
        seen = self._si[:, wi.SI_LAST_TS] > 0
        unknown = np.where(seen, 3600e9, slowest[self._layout.slot_dma])
        iv = np.where(iv > 0, iv, unknown)
        return np.maximum(s.dropout_s * 1e9, s.dropout_intervals * iv).astype(np.int64)

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
        lag: NDArray[np.int64],
        vals: NDArray[np.float64],
    ) -> list[Alert]:
        if not len(dma):
            return []
        qw, cw = self._q_w[dma], self._c_w[dma]
        q = np.where(qw != 0, vals * qw, 0.0).sum(axis=1)  # NaN when any inflow is missing
        c = np.where(cw != 0, vals * cw, 0.0).sum(axis=1)
        c[~self._has_c[dma]] = np.nan
        pres = np.full((len(dma), wm.MAXP), np.nan)
        cols = self._p_col[dma]
        rows = np.arange(len(dma))
        for j in range(wm.MAXP):
            ok = cols[:, j] >= 0
            pres[ok, j] = vals[rows[ok], cols[ok, j]]
        out = np.empty((len(dma), wm.N_O))
        outi = np.empty((len(dma), wm.N_OI), np.int64)
        st = self._step
        wm.step_minutes(
            dma, minute, gap, q, pres, self._n_pres, c, lag, self._step_p, *st.arrays(), out, outi
        )
        return self._alerts.minute_alerts(dma, minute + lag % wi.LAG_STRIDE, vals, out, outi)


def warm_up() -> None:
    """Compile (or load from the cache) the water kernels, once at start."""
    registry = StreamRegistry()
    dma = DmaSettings("warm-up", inflow=("warm-up/inlet/flow_lps",),
                      pressure=("warm-up/inlet/pressure_m",))  # fmt: skip
    detectors = WaterDetectors(registry, [dma])
    ids = [registry.id_of(n) for n in dma.streams()]
    n = 10
    ts = np.repeat(np.arange(n, dtype=np.int64) * NS_PER_MIN, len(ids))
    value = np.tile(np.asarray([1.0, 40.0]), n)
    detectors.process(Bundle(readings=ReadingBatch.of(ts, np.tile(ids, n), value)))
