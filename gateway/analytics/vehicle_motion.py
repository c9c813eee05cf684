"""Motion rules over GPS fixes: GPS jump, overspeed, harsh braking and acceleration,
and the clock-driven stale / offline rules.

    FixBatch ──track_fixes──► good fixes ──► overspeed (limit per model and zone)
                 │                 └──────► harsh braking / acceleration (+ CAN speed)
                 └─ jumps ──► gps_jump      last fix / last seen ──tick(now)──► stale, offline
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import vehicle_kernels as k
from gateway.analytics.geo import points_in_polygon
from gateway.analytics.vehicle_state import Condition, RuleContext, VehicleTable
from gateway.batch import FixBatch, FixQuality
from gateway.events import Alert, Severity

NS = 1_000_000_000
_KMH = 3.6


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class GoodFixes:
    """The fixes the other rules may trust (not jumps, in order), with their speed in m/s."""

    vehicle: NDArray[np.int32]
    ts: NDArray[np.int64]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]
    speed: NDArray[np.float64]


def _seconds(ns: int) -> float:
    return round(ns / NS, 3)


class MotionRules:
    REANCHOR_AFTER = 3  # consecutive mutually consistent jumps that move the reference

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        self.track = VehicleTable(
            {
                "ref_ts": (np.int64, k.NEVER),
                "ref_lat": (np.float64, np.nan),
                "ref_lon": (np.float64, np.nan),
                "ref_v": (np.float64, np.nan),
                "cand_ts": (np.int64, k.NEVER),
                "cand_lat": (np.float64, np.nan),
                "cand_lon": (np.float64, np.nan),
                "cand_n": (np.int32, 0),
                "can_ts": (np.int64, k.NEVER),
                "can_v": (np.float64, np.nan),
                "last_fix": (np.int64, k.NEVER),
                "last_seen": (np.int64, k.NEVER),
                "stale": (np.bool_, False),
                "offline": (np.bool_, False),
            }
        )
        gap = ctx.settings.max_gap_s
        self.jump = Condition(max_gap_s=gap)
        self.overspeed = Condition(max_gap_s=gap)
        self.braking = Condition(max_gap_s=gap)
        self.accelerating = Condition(max_gap_s=gap)
        zones = ctx.settings.zones
        self._zone_rings = [
            (np.asarray([p[0] for p in z.polygon]), np.asarray([p[1] for p in z.polygon]))
            for z in zones
        ]

    def ensure(self, n: int) -> None:
        self.track.ensure(n)
        for cond in (self.jump, self.overspeed, self.braking, self.accelerating):
            cond.ensure(n)

    def seen(self, vehicle: NDArray[np.int32], ts: NDArray[np.int64]) -> None:
        """Any data from a vehicle (fix, reading, event) shows its unit is online."""
        if len(vehicle):
            np.maximum.at(self.track["last_seen"], vehicle, ts)

    def fixes(self, fixes: FixBatch, out: list[Alert]) -> GoodFixes:
        """Judge a batch of fixes (any order); returns the good ones in time order."""
        n = self.ctx.n
        f = fixes.sorted_by_time()
        usable = (
            (f.vehicle >= 0)
            & (f.vehicle < n)
            & np.isfinite(f.lat)
            & np.isfinite(f.lon)
            & (np.abs(f.lat) <= 90)
            & (np.abs(f.lon) <= 180)
            & (f.fix != FixQuality.NONE)
            & ~((f.lat == 0) & (f.lon == 0))  # "null island": a unit reporting no position
        )
        veh = np.where(usable, f.vehicle, 0).astype(np.int32)
        model = self.ctx.model(veh) if n else np.zeros(len(f), np.intp)
        tb = self.ctx.table
        max_mps = tb.of("max_jump_kmh", model) / _KMH
        # a negative or impossible reported speed is a unit's "unknown": use the implied one
        with np.errstate(invalid="ignore"):
            plausible = (f.speed >= 0) & (f.speed <= max_mps)
        speed = np.where(plausible, f.speed, np.float32(np.nan)).astype(np.float32)
        rows = len(f)
        status = np.empty(rows, np.int8)
        implied = np.empty(rows)
        jump_m = np.empty(rows)
        v_used = np.empty(rows)
        accel = np.empty(rows)
        t = self.track
        k.track_fixes(
            f.vehicle, f.ts, f.lat, f.lon, speed, usable, max_mps, tb.ns("harsh_max_dt_s", model),
            self.REANCHOR_AFTER,
            t["ref_ts"], t["ref_lat"], t["ref_lon"], t["ref_v"],
            t["cand_ts"], t["cand_lat"], t["cand_lon"], t["cand_n"],
            status, implied, jump_m, v_used, accel,
        )  # fmt: skip
        ok = usable.nonzero()[0]
        np.maximum.at(t["last_fix"], f.vehicle[ok], f.ts[ok])
        self.seen(f.vehicle[ok], f.ts[ok])
        self._jumps(f, status=status, implied=implied, jump_m=jump_m, model=model, out=out)
        good = (status == k.GOOD) | (status == k.REANCHORED)
        g = good.nonzero()[0]
        self._overspeed(f, g, v_used, model, out)
        acc = (status == k.GOOD) & np.isfinite(accel)
        self.harsh(
            f.vehicle[acc], f.ts[acc], accel=accel[acc], speed=v_used[acc], source="gps", out=out
        )
        return GoodFixes(f.vehicle[g], f.ts[g], f.lat[g], f.lon[g], v_used[g])

    def _jumps(
        self,
        f: FixBatch,
        *,
        status: NDArray[np.int8],
        implied: NDArray[np.float64],
        jump_m: NDArray[np.float64],
        model: NDArray[np.intp],
        out: list[Alert],
    ) -> None:
        r = (status != k.SKIPPED).nonzero()[0]
        if not len(r):
            return
        zero = np.zeros(len(r), np.int64)
        on = status[r] == k.JUMP
        tr = self.jump.run(
            f.vehicle[r], f.ts[r], on=on, off=~on, badness=implied[r] * _KMH,
            hold_on_ns=zero, hold_off_ns=zero,
        )  # fmt: skip
        limit = self.ctx.table.of("max_jump_kmh", model)
        for row, opened, since, peak in tr:
            i = r[row]
            v, ts = int(f.vehicle[i]), int(f.ts[i])
            if opened:
                a = self.ctx.book.open(
                    "gps_jump", v, ts, Severity.WARNING,
                    f"GPS fix jumped {jump_m[i]:.0f} m (implied {implied[i] * _KMH:.0f} km/h)",
                    started_at=since, magnitude=round(float(implied[i] * _KMH), 1),
                    evidence={
                        "implied_kmh": round(float(implied[i] * _KMH), 1),
                        "jump_m": round(float(jump_m[i]), 1),
                        "threshold_kmh": float(limit[i]),
                        "lat": float(f.lat[i]), "lon": float(f.lon[i]),
                    },
                )  # fmt: skip
            else:
                a = self.ctx.book.clear(
                    "gps_jump", v, ts,
                    evidence={
                        "peak_implied_kmh": round(peak, 1),
                        "duration_s": _seconds(ts - since),
                        "reanchored": bool(status[i] == k.REANCHORED),
                    },
                )  # fmt: skip
            if a is not None:
                out.append(a)

    def _limits(
        self, lat: NDArray[np.float64], lon: NDArray[np.float64], model: NDArray[np.intp]
    ) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
        """The speed limit at each point (km/h) and the zone giving it (-1: the model's cap)."""
        limit = self.ctx.table.of("speed_limit_kmh", model).copy()
        zone = np.full(len(lat), -1, np.int32)
        for z, (ring_lat, ring_lon) in enumerate(self._zone_rings):
            lower = points_in_polygon(lat, lon, ring_lat, ring_lon) & (
                self.ctx.settings.zones[z].limit_kmh < limit
            )
            limit[lower] = self.ctx.settings.zones[z].limit_kmh
            zone[lower] = z
        return limit, zone

    def _overspeed(
        self,
        f: FixBatch,
        g: NDArray[np.intp],
        v_used: NDArray[np.float64],
        model: NDArray[np.intp],
        out: list[Alert],
    ) -> None:
        r = g[np.isfinite(v_used[g])]
        if not len(r):
            return
        m = model[r]
        tb = self.ctx.table
        kmh = v_used[r] * _KMH
        limit, zone = self._limits(f.lat[r], f.lon[r], m)
        on = kmh > limit
        off = kmh <= limit - tb.of("overspeed_clear_margin_kmh", m)
        tr = self.overspeed.run(
            f.vehicle[r], f.ts[r], on=on, off=off, badness=kmh,
            hold_on_ns=tb.ns("overspeed_hold_s", m),
            hold_off_ns=tb.ns("overspeed_clear_hold_s", m),
        )  # fmt: skip
        for row, opened, since, peak in tr:
            v, ts = int(f.vehicle[r[row]]), int(f.ts[r[row]])
            if opened:
                z = int(zone[row])
                name = self.ctx.settings.zones[z].name if z >= 0 else ""
                a = self.ctx.book.open(
                    "overspeed", v, ts, Severity.WARNING,
                    f"{kmh[row]:.0f} km/h over the {limit[row]:.0f} km/h limit"
                    + (f" of zone {name}" if name else "")
                    + f" for {_seconds(ts - since):.0f} s",
                    started_at=since, magnitude=round(float(kmh[row]), 1),
                    evidence={
                        "speed_kmh": round(float(kmh[row]), 1),
                        "limit_kmh": float(limit[row]),
                        "zone": name,
                        "held_s": _seconds(ts - since),
                        "hold_s": float(tb.of("overspeed_hold_s", m[row : row + 1])[0]),
                    },
                )  # fmt: skip
            else:
                a = self.ctx.book.clear(
                    "overspeed", v, ts,
                    evidence={"peak_kmh": round(peak, 1), "duration_s": _seconds(ts - since)},
                )  # fmt: skip
            if a is not None:
                out.append(a)

    def can_speed(
        self, vehicle: NDArray[np.int32], ts: NDArray[np.int64], kmh: NDArray[np.float64],
        out: list[Alert],
    ) -> None:  # fmt: skip
        """Harsh braking / acceleration from a CAN wheel-speed stream (km/h), in time order."""
        if not len(ts):
            return
        mps = kmh / _KMH
        accel = np.empty(len(ts))
        max_dt = self.ctx.table.ns("harsh_max_dt_s", self.ctx.model(vehicle))
        k.speed_accel(vehicle, ts, mps, max_dt, self.track["can_ts"], self.track["can_v"], accel)
        ok = np.isfinite(accel)
        self.harsh(vehicle[ok], ts[ok], accel=accel[ok], speed=mps[ok], source="can", out=out)

    def harsh(
        self,
        vehicle: NDArray[np.int32],
        ts: NDArray[np.int64],
        *,
        accel: NDArray[np.float64],
        speed: NDArray[np.float64],
        source: str,
        out: list[Alert],
    ) -> None:
        if not len(ts):
            return
        m = self.ctx.model(vehicle)
        tb = self.ctx.table
        zero = np.zeros(len(ts), np.int64)
        for kind, cond, limit, sign in (
            ("harsh_braking", self.braking, tb.of("harsh_brake_mps2", m), -1.0),
            ("harsh_acceleration", self.accelerating, tb.of("harsh_accel_mps2", m), 1.0),
        ):
            on = sign * accel >= limit
            for row, opened, since, peak in cond.run(
                vehicle, ts, on=on, off=~on, badness=sign * accel, hold_on_ns=zero, hold_off_ns=zero
            ):
                v, t = int(vehicle[row]), int(ts[row])
                if opened:
                    a = self.ctx.book.open(
                        kind, v, t, Severity.WARNING,
                        f"{kind.replace('_', ' ')} at {abs(accel[row]):.1f} m/s²",
                        started_at=since, magnitude=float(abs(accel[row])),
                        evidence={
                            "accel_mps2": round(float(accel[row]), 2),
                            "threshold_mps2": float(limit[row]),
                            "speed_kmh": round(float(speed[row] * _KMH), 1),
                            "source": source,
                        },
                    )  # fmt: skip
                else:
                    a = self.ctx.book.clear(
                        kind, v, t,
                        evidence={"peak_mps2": round(peak, 2), "duration_s": _seconds(t - since)},
                    )  # fmt: skip
                if a is not None:
                    out.append(a)

    def in_service(self, now_ns: int) -> bool:
        s = self.ctx.settings
        hour = ((now_ns / NS + s.utc_offset_minutes * 60) % 86400) / 3600
        if s.service_end_h > 24:
            return hour >= s.service_start_h or hour < s.service_end_h - 24
        return s.service_start_h <= hour < s.service_end_h

    def tick(self, now_ns: int) -> list[Alert]:
        """Stale (no fix for stale_factor times the fix period) and offline (no data for
        offline_after_s), judged against the clock in service hours; both clear
        when data is fresh again."""
        n = self.ctx.n
        out: list[Alert] = []
        if not n:
            return out
        model = self.ctx.model(np.arange(n, dtype=np.int32))
        tb = self.ctx.table
        period = tb.ns("fix_period_s", model)
        stale_ns = (tb.of("stale_factor", model) * period).astype(np.int64)
        service = self.in_service(now_ns)
        for kind, last_name, limit, severity in (
            ("stale", "last_fix", stale_ns, Severity.WARNING),
            ("offline", "last_seen", tb.ns("offline_after_s", model), Severity.CRITICAL),
        ):
            last = self.track[last_name][:n]
            flag = self.track[kind]
            known = last != k.NEVER
            age = np.where(known, now_ns - last, 0)
            opening = service & known & ~flag[:n] & (age > limit)
            # hysteresis: clear only once the data is a fix period fresher than the trip point
            clearing = flag[:n] & known & (age <= np.maximum(limit - period, period))
            for v in opening.nonzero()[0]:
                flag[v] = True
                a = self.ctx.book.open(
                    kind, int(v), now_ns, severity,
                    f"no {'fix' if kind == 'stale' else 'data'} for {_seconds(int(age[v])):.0f} s",
                    started_at=int(last[v]), magnitude=_seconds(int(age[v])),
                    evidence={
                        "silent_s": _seconds(int(age[v])),
                        "threshold_s": _seconds(int(limit[v])),
                        "last_ts": int(last[v]),
                    },
                )  # fmt: skip
                if a is not None:
                    out.append(a)
            for v in clearing.nonzero()[0]:
                flag[v] = False
                a = self.ctx.book.clear(kind, int(v), now_ns, evidence={"back_at_ts": int(last[v])})
                if a is not None:
                    out.append(a)
        return out
