"""Route rules: deviation from the assigned GTFS shape, and bunching / gapping.

    good fixes ──group by assigned shape──► Polyline.locate ──► distance ──► route_deviation
                                                           └──► along-route position
    positions on a shape, sorted ──► gap to the bus ahead ÷ running speed = headway
                                     headway ÷ scheduled headway ──► bunching / gapping

Headway is estimated from the distance to the bus ahead at the route's running
speed (configured, or the shape length over the scheduled trip time in GTFS),
judged on each follower's own fixes. The lead bus has nobody ahead: any
bunching or gapping it had clears.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import vehicle_kernels as k
from gateway.analytics.geo import Polyline
from gateway.analytics.gtfs import GtfsFeed, Shape
from gateway.analytics.vehicle_motion import GoodFixes
from gateway.analytics.vehicle_state import Condition, RuleContext, VehicleTable
from gateway.events import Alert, Severity

NS = 1_000_000_000
ROUTE_KINDS = ("route_deviation", "bunching", "gapping")


class RouteRules:
    def __init__(
        self, ctx: RuleContext, shapes: Mapping[str, Shape], feed: GtfsFeed | None = None
    ) -> None:
        self.ctx = ctx
        self.shapes = shapes
        self.feed = feed
        s = ctx.settings
        self.shape_ids: list[str] = []
        self._shape_no: dict[str, int] = {}
        self._lines: dict[int, Polyline] = {}
        self._headways: dict[tuple[int, dt.date, int], float] = {}
        self._speeds: dict[int, float] = {}  # shape number -> running speed, m/s
        self.state = VehicleTable(
            {
                "shape": (np.int32, -1),
                "along": (np.float64, np.nan),
                "along_ts": (np.int64, k.NEVER),
            }
        )
        self.deviation = Condition(
            min_on=s.deviation_fixes, min_off=s.deviation_fixes, max_gap_s=s.max_gap_s
        )
        self.bunching = Condition(max_gap_s=s.max_gap_s)
        self.gapping = Condition(max_gap_s=s.max_gap_s)
        self._pending: dict[str, str | None] = dict(s.assignments)

    def ensure(self, n: int) -> None:
        self.state.ensure(n)
        for cond in (self.deviation, self.bunching, self.gapping):
            cond.ensure(n)

    def _shape(self, shape_id: str) -> int:
        if shape_id not in self.shapes:
            raise KeyError(
                f"shape {shape_id!r} is not in the GTFS feed "
                f"(set gtfs_path, and use a shape_id from its shapes.txt)"
            )
        no = self._shape_no.get(shape_id)
        if no is None:
            no = self._shape_no[shape_id] = len(self.shape_ids)
            self.shape_ids.append(shape_id)
            self._lines[no] = self.shapes[shape_id].polyline()
        return no

    def assign(self, vehicle: str, shape_id: str | None) -> None:
        """Queue an assignment; applied (clearing the old route's alerts) on the next batch."""
        if shape_id is not None:
            self._shape(shape_id)  # fail now, at the caller, on an unknown shape
        self._pending[vehicle] = shape_id

    def apply_assignments(self, at: int, out: list[Alert]) -> None:
        for name, shape_id in self._pending.items():
            v = self.ctx.vehicles.intern(name)
            self.ctx.ensure()
            self.ensure(self.ctx.n)
            new = -1 if shape_id is None else self._shape(shape_id)
            if self.state["shape"][v] == new:
                continue
            self.state["shape"][v] = new
            self.state["along"][v] = np.nan
            for kind, cond in zip(
                ROUTE_KINDS, (self.deviation, self.bunching, self.gapping), strict=True
            ):
                cond.reset(v)
                a = self.ctx.book.clear(kind, v, at, evidence={"cleared_because": "reassigned"})
                if a is not None:
                    out.append(a)
        self._pending.clear()

    def fixes(self, good: GoodFixes, out: list[Alert]) -> None:
        if not len(good.ts):
            return
        shape = self.state["shape"][good.vehicle]
        r = (shape >= 0).nonzero()[0]
        if not len(r):
            return
        dist = np.empty(len(r))
        along = np.empty(len(r))
        touched = np.unique(shape[r])
        for no in touched:
            sel = (shape[r] == no).nonzero()[0]
            dist[sel], along[sel] = self._lines[int(no)].locate(good.lat[r[sel]], good.lon[r[sel]])
        self._deviation(good, r, dist, shape[r], out)
        on_route = dist <= self.ctx.settings.deviation_m
        rv, rt, ra = good.vehicle[r][on_route], good.ts[r][on_route], along[on_route]
        # rows are in time order: keep each vehicle's last one, its latest position
        _, first_of_reversed = np.unique(rv[::-1], return_index=True)
        last = len(rv) - 1 - first_of_reversed
        self.state["along"][rv[last]] = ra[last]
        self.state["along_ts"][rv[last]] = rt[last]
        for no in touched:
            self._headway(int(no), out)

    def _deviation(
        self,
        good: GoodFixes,
        r: NDArray[np.intp],
        dist: NDArray[np.float64],
        shape: NDArray[np.int32],
        out: list[Alert],
    ) -> None:
        s = self.ctx.settings
        zero = np.zeros(len(r), np.int64)
        veh, ts = good.vehicle[r], good.ts[r]
        tr = self.deviation.run(
            veh, ts, on=dist > s.deviation_m, off=dist <= s.deviation_clear_m, badness=dist,
            hold_on_ns=zero, hold_off_ns=zero,
        )  # fmt: skip
        for row, opened, since, peak in tr:
            v, t = int(veh[row]), int(ts[row])
            if opened:
                a = self.ctx.book.open(
                    "route_deviation", v, t, Severity.WARNING,
                    f"{dist[row]:.0f} m off shape {self.shape_ids[shape[row]]} "
                    f"for {s.deviation_fixes} fixes",
                    started_at=since, magnitude=float(dist[row]),
                    evidence={
                        "distance_m": round(float(dist[row]), 1),
                        "threshold_m": s.deviation_m,
                        "fixes": s.deviation_fixes,
                        "shape_id": self.shape_ids[shape[row]],
                        "lat": float(good.lat[r[row]]), "lon": float(good.lon[r[row]]),
                    },
                )  # fmt: skip
            else:
                a = self.ctx.book.clear(
                    "route_deviation", v, t,
                    evidence={"peak_m": round(peak, 1), "duration_s": round((t - since) / NS, 3)},
                )  # fmt: skip
            if a is not None:
                out.append(a)

    def scheduled_headway_s(self, no: int, at_ns: int) -> float:
        shape_id = self.shape_ids[no]
        fixed = self.ctx.settings.scheduled_headways_s.get(shape_id)
        if fixed is not None:
            return fixed
        if self.feed is None:
            return float("nan")
        local = at_ns / NS + self.ctx.settings.utc_offset_minutes * 60
        day = dt.date(1970, 1, 1) + dt.timedelta(days=int(local // 86400))
        hour = int((local % 86400) // 3600)
        slot = (no, day, hour)
        if slot not in self._headways:
            if len(self._headways) > 10_000:  # a long run: forget past days
                self._headways.clear()
            services = self.feed.services_on(day)
            self._headways[slot] = self.feed.scheduled_headway_s(
                shape_id, hour * 3600 + 1800, services
            )
        return self._headways[slot]

    def running_speed_mps(self, no: int) -> float:
        found = self._speeds.get(no)
        if found is not None:
            return found
        s = self.ctx.settings
        shape_id = self.shape_ids[no]
        if shape_id in s.route_speeds_mps:
            speed = s.route_speeds_mps[shape_id]
        else:
            speed = self.feed.scheduled_speed_mps(shape_id) if self.feed else float("nan")
            speed = speed if np.isfinite(speed) and speed > 0 else s.default_route_speed_mps
        self._speeds[no] = speed
        return speed

    def _headway(self, no: int, out: list[Alert]) -> None:
        s = self.ctx.settings
        n = self.ctx.n
        st = self.state
        members = ((st["shape"][:n] == no) & np.isfinite(st["along"][:n])).nonzero()[0]
        if not len(members):
            return
        ts = st["along_ts"][members]
        fresh = members[ts >= ts.max() - round(s.headway_max_age_s * NS)]
        order = fresh[np.argsort(-st["along"][fresh], kind="stable")]  # the lead bus first
        along = st["along"][order]
        gap_m = np.concatenate([[np.nan], along[:-1] - along[1:]])
        speed = self.running_speed_mps(no)
        headway = gap_m / speed
        t = st["along_ts"][order]
        sched = self.scheduled_headway_s(no, int(t.max()))
        if not np.isfinite(sched) or sched <= 0:
            return
        ratio = headway / sched
        lead = ~np.isfinite(ratio)  # nobody ahead: no headway to judge
        veh = order.astype(np.int32)
        hold = np.full(len(order), round(s.headway_hold_s * NS), np.int64)
        zero = np.zeros(len(order), np.int64)
        band = s.headway_clear_band
        rules = (
            ("bunching", self.bunching, ratio < s.bunching_ratio,
             lead | (ratio >= s.bunching_ratio + band), -ratio),
            ("gapping", self.gapping, ratio > s.gapping_ratio,
             lead | (ratio <= s.gapping_ratio - band), ratio),
        )  # fmt: skip
        for kind, cond, on, off, badness in rules:
            for row, opened, since, peak in cond.run(
                veh, t, on=on & ~lead, off=off, badness=badness, hold_on_ns=hold, hold_off_ns=zero
            ):
                v, at = int(veh[row]), int(t[row])
                if opened:
                    ahead = self.ctx.vehicles.name_of(int(order[row - 1]))
                    a = self.ctx.book.open(
                        kind, v, at, Severity.WARNING,
                        f"{kind}: {headway[row]:.0f} s behind {ahead}, scheduled {sched:.0f} s",
                        started_at=since, magnitude=float(ratio[row]),
                        evidence={
                            "headway_s": round(float(headway[row]), 1),
                            "scheduled_headway_s": sched,
                            "ratio": round(float(ratio[row]), 3),
                            "threshold_ratio": (
                                s.bunching_ratio if kind == "bunching" else s.gapping_ratio
                            ),
                            "gap_m": round(float(gap_m[row]), 1),
                            "vehicle_ahead": ahead,
                            "running_speed_mps": round(speed, 2),
                            "shape_id": self.shape_ids[no],
                            "held_s": round((at - since) / NS, 3),
                        },
                    )  # fmt: skip
                else:
                    a = self.ctx.book.clear(
                        kind, v, at,
                        evidence={"worst_ratio": round(abs(peak), 3),
                                  "duration_s": round((at - since) / NS, 3)},
                    )  # fmt: skip
                if a is not None:
                    out.append(a)
