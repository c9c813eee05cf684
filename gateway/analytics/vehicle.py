"""Vehicle rules: the runtime stage that turns bus telemetry into alerts.

    Bundle ──► VehicleRules.process ──► Bundle + alerts
                 ├─ fixes ─────► MotionRules  gps_jump, overspeed, harsh_braking/acceleration
                 │    └─ good fixes ─► RouteRules  route_deviation, bunching, gapping
                 ├─ readings ──► HealthRules  engine_overheat, low_oil_pressure, battery_low, idling
                 │  (bus/<id>/<quantity>)      (+ harsh_* from the CAN speed_kmh stream)
                 ├─ events ────► HealthRules  panic, dtc
                 └─ clock ─────► MotionRules.tick  stale, offline

Rules are streaming and stateful: each condition has hysteresis and a minimum
duration, is judged on data time (the fix's or reading's ts), and opens once
and clears once (`Alert` values with stable ids). Only stale and offline look
at a clock, the injectable `clock` (`tick(now_ns)` for a caller that has its
own). State is a few arrays per vehicle, so a fleet of 2,000 is small.

Alerts (asset `bus/<vehicle_id>`; evidence keys in brackets):

    kind                sev.      opens when (defaults; per model in ModelThresholds)
    stale               warning   no fix for 3 x fix_period_s in service [silent_s, threshold_s]
    offline             critical  no data for 600 s in service [silent_s, threshold_s]
    gps_jump            warning   implied speed > 120 km/h [implied_kmh, jump_m, threshold_kmh]
    overspeed           warning   > 80 km/h or zone limit, held 10 s [speed_kmh, limit_kmh, zone]
    harsh_braking       warning   decel >= 3.0 m/s², fixes or CAN [accel_mps2, threshold_mps2]
    harsh_acceleration  warning   accel >= 2.5 m/s² [accel_mps2, threshold_mps2, source]
    panic               critical  Event panic, at once; needs_ack; clears on panic_cleared or ack
    engine_overheat     critical  coolant_c > 105 for 60 s [value, threshold, held_s]
    low_oil_pressure    critical  oil_kpa < 100 at rpm > 600 for 10 s [value, threshold, rpm]
    battery_low         warning   battery_v < 23.0 for 60 s [value, threshold, held_s]
    dtc                 by lamp   Event dtc: red critical, amber/protect/mil warning, else info
    idling              info      rpm > 0 and speed <= 0.5 m/s for 300 s [value, rpm, held_s]
    route_deviation     warning   > 150 m from the assigned shape for 3 fixes [distance_m, shape_id]
    bunching            warning   headway < 50% of schedule, 60 s [headway_s, ratio, vehicle_ahead]
    gapping             warning   headway > 150% of schedule, 60 s [headway_s, ratio, vehicle_ahead]

Each clears once on the far side of its hysteresis edge (the *_clear_* settings),
and the cleared value carries the episode's worst value and duration.
A DTC event holding `faults` (the MQTT driver's shape) is a whole DM1: open
faults missing from it clear, and an empty list clears them all. Events of one
fault each (spn, fmi, occurrence, lamp) sharing a ts are one DM1 too; SPN 0 /
FMI 0 (J1939's "no faults") or `active: false` clear. Events with `live: false`
or `history: true` (a unit's buffered backlog) raise nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import vehicle_kernels
from gateway.analytics.gtfs import GtfsFeed, Shape, load_gtfs
from gateway.analytics.vehicle_health import HealthRules, Rows
from gateway.analytics.vehicle_motion import MotionRules
from gateway.analytics.vehicle_route import RouteRules
from gateway.analytics.vehicle_settings import VehicleRulesSettings
from gateway.analytics.vehicle_state import RuleContext
from gateway.batch import BAD
from gateway.bundle import Bundle
from gateway.events import Alert
from gateway.parts import Wiring
from gateway.streams import StreamRegistry

QUANTITIES = ("coolant_c", "oil_kpa", "rpm", "fuel_lph", "battery_v", "speed_kmh", "fuel_pct")
_USED = ("coolant_c", "oil_kpa", "rpm", "battery_v", "speed_kmh")


class VehicleRules:
    """The vehicle health and operations rules of issue 4 as one `Stage`.

    `feed` (or `settings.gtfs_path`) gives the shapes for route deviation and the
    timetable for scheduled headways; without it only configured headways work
    and a vehicle cannot be assigned a route."""

    def __init__(
        self,
        settings: VehicleRulesSettings,
        registry: StreamRegistry,
        *,
        feed: GtfsFeed | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if feed is None and settings.gtfs_path:
            feed = load_gtfs(Path(settings.gtfs_path))
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.ctx = RuleContext(settings, registry.vehicles)
        self.motion = MotionRules(self.ctx)
        self.health = HealthRules(self.ctx)
        shapes: Mapping[str, Shape] = feed.shapes if feed is not None else {}
        unknown = sorted(set(settings.assignments.values()) - set(shapes))
        if unknown:
            raise ValueError(
                f"assignments name shape(s) {unknown[:5]} not in the GTFS feed"
                + ("" if feed else "; set gtfs_path to a GTFS zip with shapes.txt")
            )
        self.route = RouteRules(self.ctx, shapes, feed)
        self._stream_vehicle = np.empty(0, np.int32)
        self._stream_quantity = np.empty(0, np.int8)

    @classmethod
    def create(cls, wiring: Wiring, settings: VehicleRulesSettings) -> VehicleRules:
        return cls(settings, wiring.registry)

    def set_assignment(self, vehicle: str, shape_id: str | None) -> None:
        """Put a vehicle on a GTFS shape (None: off any route). Applied at the next
        batch; alerts of the old route clear then. Raises KeyError on an unknown shape."""
        self.route.assign(vehicle, shape_id)

    def open_alerts(self, vehicle: str | None = None) -> list[Alert]:
        """The open alerts, of one vehicle if named (for its retained status message)."""
        alerts = self.ctx.book.open_alerts()
        if vehicle is None:
            return alerts
        asset = f"bus/{vehicle}"
        return [a for a in alerts if a.asset == asset]

    @staticmethod
    def warm_up() -> None:
        """Compile or load the numba kernels now rather than on the first batch."""
        vehicle_kernels.warm_up()

    def acknowledge(self, alert_id: str, by: str, at: int) -> Alert | None:
        """An operator's acknowledgement of an open alert. Acknowledging a panic
        also clears it: the operator has dealt with the emergency."""
        found = self.ctx.book.acknowledge(alert_id, by, at)
        if found is None:
            return None
        (kind, vehicle, key), acked = found
        if kind != "panic":
            return acked
        self.health.panic_presses.pop(vehicle, None)
        return self.ctx.book.clear(
            kind, vehicle, at, key, evidence={"cleared_because": "acknowledged"}
        )

    def _ensure(self) -> int:
        n = self.ctx.ensure()
        self.motion.ensure(n)
        self.health.ensure(n)
        self.route.ensure(n)
        return n

    def _map_streams(self) -> None:
        """Extend the stream id -> (vehicle, quantity) lookup to streams registered since."""
        start = len(self._stream_vehicle)
        total = len(self.registry)
        if total <= start:
            return
        veh = np.full(total - start, -1, np.int32)
        qty = np.full(total - start, -1, np.int8)
        for i in range(start, total):
            info = self.registry.info(i)
            if info.asset.startswith("bus/") and info.asset.count("/") == 1:
                q = info.quantity
                if q in _USED:
                    veh[i - start] = self.registry.vehicles.intern(info.asset[4:])
                    qty[i - start] = _USED.index(q)
        self._stream_vehicle = np.concatenate([self._stream_vehicle, veh])
        self._stream_quantity = np.concatenate([self._stream_quantity, qty])

    def _readings(self, bundle: Bundle) -> dict[str, Rows]:
        r = bundle.readings
        if not len(r):
            return {}
        self._map_streams()
        known = (r.stream >= 0) & (r.stream < len(self._stream_vehicle))
        stream = np.where(known, r.stream, 0)
        qty = np.where(known, self._stream_quantity[stream], -1)
        use = (qty >= 0) & ((r.quality & BAD) == 0) & np.isfinite(r.value)
        idx = use.nonzero()[0]
        idx = idx[np.argsort(r.ts[idx], kind="stable")]
        veh: NDArray[np.int32] = self._stream_vehicle[stream[idx]]
        ts, value, q = r.ts[idx], r.value[idx], qty[idx]
        self.motion.seen(veh, ts)
        out: dict[str, Rows] = {}
        for code, name in enumerate(_USED):
            sel = (q == code).nonzero()[0]
            if len(sel):
                out[name] = (veh[sel], ts[sel], value[sel])
        return out

    def process(self, bundle: Bundle) -> Bundle:
        if not bundle.live:
            return bundle  # buffered history: stored, never a live alert
        alerts: list[Alert] = []
        self._map_streams()
        self.route.apply_assignments(self.clock(), alerts)
        # events may name vehicles not yet interned: intern first so the arrays cover them
        ev_veh = [
            self.registry.vehicles.intern(e.asset[4:])
            for e in bundle.events
            if e.asset.startswith("bus/") and e.asset.count("/") == 1
        ]
        ev_ts = [
            e.ts for e in bundle.events if e.asset.startswith("bus/") and e.asset.count("/") == 1
        ]
        self._ensure()
        self.motion.seen(np.asarray(ev_veh, np.int32), np.asarray(ev_ts, np.int64))
        readings = self._readings(bundle)
        good = self.motion.fixes(bundle.fixes, alerts)
        self.route.fixes(good, alerts)
        empty: Rows = (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0))
        can = readings.get("speed_kmh", empty)
        self.motion.can_speed(can[0], can[1], can[2], alerts)
        speed_v = np.concatenate([good.vehicle, can[0]])
        speed_t = np.concatenate([good.ts, can[1]])
        speed_x = np.concatenate([good.speed, can[2] / 3.6])
        order = np.argsort(speed_t, kind="stable")
        self.health.readings(readings, (speed_v[order], speed_t[order], speed_x[order]), alerts)
        self.health.events(bundle.events, alerts)
        alerts.extend(self.motion.tick(self.clock()))
        if not alerts:
            return bundle
        return dataclasses.replace(bundle, alerts=(*bundle.alerts, *alerts))

    def tick(self, now_ns: int) -> list[Alert]:
        """Stale and offline against `now_ns`, for a caller that runs between batches."""
        self._ensure()
        return self.motion.tick(now_ns)
