"""Health rules over CAN readings and unit events: overheating, low oil pressure while
running, battery under-voltage, excess idling, the panic button and active DTCs.

    bus/<id>/coolant_c ─────────────────────────► engine_overheat
    bus/<id>/battery_v ─────────────────────────► battery_low
    bus/<id>/oil_kpa + rpm ──asof_pair──────────► low_oil_pressure
    bus/<id>/rpm + speed (fix or CAN) ──asof────► idling
    Event panic ──► panic (critical, needs ack)   Event dtc ──► dtc (per spn/fmi, by lamp)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import vehicle_kernels as k
from gateway.analytics.vehicle_state import Condition, RuleContext, VehicleTable
from gateway.events import Alert, Event, Severity
from gateway.logs import get_logger

log = get_logger("gateway.analytics.vehicle")

NS = 1_000_000_000
LAMP_SEVERITY: Mapping[str, Severity] = {
    "red": Severity.CRITICAL,
    "amber": Severity.WARNING,
    "protect": Severity.WARNING,
    "mil": Severity.WARNING,
}

EVENT_KINDS = ("panic", "panic_cleared", "dtc")
Rows = tuple[NDArray[np.int32], NDArray[np.int64], NDArray[np.float64]]  # vehicle, ts, value


class SignalPair:
    """Two signals of each vehicle joined as of each sample of either."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_ns = round(max_age_s * NS)
        self.state = VehicleTable(
            {
                "a": (np.float64, np.nan),
                "a_ts": (np.int64, k.NEVER),
                "b": (np.float64, np.nan),
                "b_ts": (np.int64, k.NEVER),
            }
        )

    def join(self, a: Rows, b: Rows) -> tuple[Rows, NDArray[np.float64]]:
        """One row per (vehicle, ts) of either signal, in time order, with the as-of
        a (the value column) and b. Samples of one snapshot share a ts: the row kept
        is the last of them, so it sees both."""
        vehicle = np.concatenate([a[0], b[0]])
        ts = np.concatenate([a[1], b[1]])
        which = np.concatenate([np.zeros(len(a[1]), np.int8), np.ones(len(b[1]), np.int8)])
        value = np.concatenate([a[2], b[2]])
        order = np.lexsort((which, vehicle, ts))
        vehicle, ts, which, value = vehicle[order], ts[order], which[order], value[order]
        out_a = np.empty(len(ts))
        out_b = np.empty(len(ts))
        s = self.state
        k.asof_pair(
            vehicle, ts, which, value, self.max_age_ns,
            s["a"], s["a_ts"], s["b"], s["b_ts"], out_a, out_b,
        )  # fmt: skip
        last = np.ones(len(ts), np.bool_)
        last[:-1] = (ts[1:] != ts[:-1]) | (vehicle[1:] != vehicle[:-1])
        return (vehicle[last], ts[last], out_a[last]), out_b[last]


def _secs(ns: int) -> float:
    return round(ns / NS, 3)


class HealthRules:
    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx
        gap = ctx.settings.max_gap_s
        self.overheat = Condition(max_gap_s=gap)
        self.battery = Condition(max_gap_s=gap)
        self.oil = Condition(max_gap_s=gap)
        self.idle = Condition(max_gap_s=gap)
        self.oil_rpm = SignalPair(gap)
        self.idle_rpm_speed = SignalPair(gap)
        self.panic_presses: dict[int, int] = {}

    def ensure(self, n: int) -> None:
        for cond in (self.overheat, self.battery, self.oil, self.idle):
            cond.ensure(n)
        self.oil_rpm.state.ensure(n)
        self.idle_rpm_speed.state.ensure(n)

    def readings(self, by_quantity: Mapping[str, Rows], speed: Rows, out: list[Alert]) -> None:
        """`by_quantity` holds each quantity's rows in time order; `speed` (m/s) comes
        from good fixes and the CAN speed stream."""
        empty: Rows = (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0))
        tb = self.ctx.table
        coolant = by_quantity.get("coolant_c", empty)
        m = self.ctx.model(coolant[0])
        self._level(
            "engine_overheat", self.overheat, coolant, Severity.CRITICAL,
            on=coolant[2] > tb.of("coolant_max_c", m),
            off=coolant[2] <= tb.of("coolant_clear_c", m),
            badness=coolant[2], hold=tb.ns("coolant_hold_s", m),
            clear_hold=tb.ns("clear_hold_s", m),
            threshold=tb.of("coolant_max_c", m), unit="°C", out=out,
        )  # fmt: skip
        batt = by_quantity.get("battery_v", empty)
        m = self.ctx.model(batt[0])
        self._level(
            "battery_low", self.battery, batt, Severity.WARNING,
            on=batt[2] < tb.of("battery_min_v", m),
            off=batt[2] >= tb.of("battery_clear_v", m),
            badness=-batt[2], hold=tb.ns("battery_hold_s", m), clear_hold=tb.ns("clear_hold_s", m),
            threshold=tb.of("battery_min_v", m), unit="V", out=out,
        )  # fmt: skip
        rpm = by_quantity.get("rpm", empty)
        (veh, ts, oil), rpm_at = self.oil_rpm.join(by_quantity.get("oil_kpa", empty), rpm)
        known = np.isfinite(oil) & np.isfinite(rpm_at)
        veh, ts, oil, rpm_at = veh[known], ts[known], oil[known], rpm_at[known]
        m = self.ctx.model(veh)
        running = rpm_at > tb.of("oil_running_rpm", m)
        self._level(
            "low_oil_pressure", self.oil, (veh, ts, oil), Severity.CRITICAL,
            on=running & (oil < tb.of("oil_min_kpa", m)),
            off=~running | (oil >= tb.of("oil_clear_kpa", m)),
            badness=-oil, hold=tb.ns("oil_hold_s", m), clear_hold=tb.ns("clear_hold_s", m),
            threshold=tb.of("oil_min_kpa", m), unit="kPa", out=out,
            extra={"rpm": rpm_at},
        )  # fmt: skip
        (veh, ts, rpm_now), spd = self.idle_rpm_speed.join(rpm, speed)
        known = np.isfinite(rpm_now) & np.isfinite(spd)
        veh, ts, rpm_now, spd = veh[known], ts[known], rpm_now[known], spd[known]
        m = self.ctx.model(veh)
        engine = rpm_now > tb.of("idle_min_rpm", m)
        self._level(
            "idling", self.idle, (veh, ts, spd), Severity.INFO,
            on=engine & (spd <= tb.of("idle_max_speed_mps", m)),
            off=~engine | (spd >= tb.of("idle_clear_speed_mps", m)),
            badness=rpm_now, hold=tb.ns("idle_hold_s", m), clear_hold=np.zeros(len(ts), np.int64),
            threshold=tb.of("idle_max_speed_mps", m), unit="m/s", out=out, extra={"rpm": rpm_now},
        )  # fmt: skip

    def _level(
        self,
        kind: str,
        cond: Condition,
        rows: Rows,
        severity: Severity,
        *,
        on: NDArray[np.bool_],
        off: NDArray[np.bool_],
        badness: NDArray[np.float64],
        hold: NDArray[np.int64],
        clear_hold: NDArray[np.int64],
        threshold: NDArray[np.float64],
        unit: str,
        out: list[Alert],
        extra: Mapping[str, NDArray[np.float64]] | None = None,
    ) -> None:
        vehicle, ts, value = rows
        ok = np.isfinite(value)  # NaN is unknown: it neither holds nor clears a condition
        if not ok.all():
            idx = ok.nonzero()[0]
            vehicle, ts, value = vehicle[idx], ts[idx], value[idx]
            on, off = on[idx], off[idx]
            badness, threshold = badness[idx], threshold[idx]
            hold, clear_hold = hold[idx], clear_hold[idx]
            extra = {name: col[idx] for name, col in (extra or {}).items()}
        if not len(ts):
            return
        tr = cond.run(
            vehicle, ts, on=on, off=off, badness=badness, hold_on_ns=hold, hold_off_ns=clear_hold
        )
        for row, opened, since, peak in tr:
            v, t = int(vehicle[row]), int(ts[row])
            if opened:
                evidence: dict[str, Any] = {
                    "value": round(float(value[row]), 3),
                    "threshold": float(threshold[row]),
                    "unit": unit,
                    "held_s": _secs(t - since),
                    "hold_s": _secs(int(hold[row])),
                }
                for name, col in (extra or {}).items():
                    evidence[name] = round(float(col[row]), 3)
                a = self.ctx.book.open(
                    kind, v, t, severity,
                    f"{kind.replace('_', ' ')}: {value[row]:.1f} {unit} "
                    f"for {_secs(t - since):.0f} s",
                    started_at=since, magnitude=float(value[row]), evidence=evidence,
                )  # fmt: skip
            else:
                a = self.ctx.book.clear(
                    kind, v, t,
                    evidence={"worst": round(float(abs(peak)), 3), "duration_s": _secs(t - since)},
                )  # fmt: skip
            if a is not None:
                out.append(a)

    def events(self, events: Sequence[Event], out: list[Alert]) -> None:
        """Panic and DTC events, in time order. History packets raise nothing live."""
        snapshot: dict[tuple[int, int], set[str]] = {}
        for ev in sorted(events, key=lambda e: e.ts):
            if ev.kind not in EVENT_KINDS or not ev.asset.startswith("bus/"):
                continue
            if ev.asset.count("/") != 1:
                continue
            if ev.data.get("history") is True or ev.data.get("live") is False:
                continue  # a unit's buffered backlog: stored, but nothing live to raise
            vehicle = self.ctx.vehicles.intern(ev.asset[4:])
            if ev.kind in ("panic", "panic_cleared"):
                self._panic(vehicle, ev, out)
                continue
            key = self._dtc(vehicle, ev, out)
            if key is not None:
                snapshot.setdefault((vehicle, ev.ts), set()).add(key)
        if not self.ctx.settings.dtc_snapshots:
            return
        # the faults of one DM1 share its time: an open fault missing from a newer DM1 is gone
        latest: dict[int, tuple[int, set[str]]] = {}
        for (vehicle, ts), keys in snapshot.items():
            if vehicle not in latest or ts > latest[vehicle][0]:
                latest[vehicle] = (ts, keys)
        for vehicle, (ts, keys) in latest.items():
            for key in self.ctx.book.keys_open("dtc", vehicle):
                if key not in keys and self._opened_before(vehicle, key, ts):
                    self._clear_dtc(vehicle, key, ts, "absent from a newer DM1", out)

    def _opened_before(self, vehicle: int, key: str, ts: int) -> bool:
        alert = self.ctx.book.get("dtc", vehicle, key)
        return alert is not None and alert.opened_at < ts

    def _panic(self, vehicle: int, ev: Event, out: list[Alert]) -> None:
        if ev.kind == "panic_cleared" or ev.data.get("active", True) is False:
            presses = self.panic_presses.pop(vehicle, 0)
            a = self.ctx.book.clear("panic", vehicle, ev.ts, evidence={"presses": presses})
        else:
            self.panic_presses[vehicle] = self.panic_presses.get(vehicle, 0) + 1
            a = self.ctx.book.open(
                "panic", vehicle, ev.ts, Severity.CRITICAL,
                ev.message or "emergency button pressed",
                started_at=ev.ts, needs_ack=True,
                evidence={k_: v for k_, v in ev.data.items() if isinstance(v, str | int | float)},
            )  # fmt: skip
        if a is not None:
            out.append(a)

    def _dtc(self, vehicle: int, ev: Event, out: list[Alert]) -> str | None:
        """A DTC event in either shape: a whole DM1 (`faults`: a list of {spn, fmi,
        oc, lamp}, empty when no fault is active), after which any other open fault
        clears; or one fault per event (spn, fmi, occurrence, lamp). Returns the
        key of a single fault, for the per-ts snapshot rule."""
        faults = ev.data.get("faults")
        if faults is None:
            return self._fault(vehicle, ev.ts, ev.data, ev.message, out)
        if not isinstance(faults, list | tuple):
            log.warning("vehicle.bad_dtc_event", asset=ev.asset, data=str(dict(ev.data))[:200])
            return None
        active = set()
        for fault in faults:
            if isinstance(fault, Mapping):
                key = self._fault(vehicle, ev.ts, fault, "", out)
                if key is not None:
                    active.add(key)
        for key in self.ctx.book.keys_open("dtc", vehicle):
            if key not in active and self._opened_before(vehicle, key, ev.ts + 1):
                why = "DM1 reports no active faults" if not active else "absent from a newer DM1"
                self._clear_dtc(vehicle, key, ev.ts, why, out)
        return None

    def _fault(
        self, vehicle: int, ts: int, data: Mapping[str, Any], message: str, out: list[Alert]
    ) -> str | None:
        """Open or re-grade one fault; returns its key, or None for a 'no faults' DTC."""
        try:
            spn, fmi = int(data["spn"]), int(data["fmi"])
        except (KeyError, TypeError, ValueError):
            log.warning("vehicle.bad_dtc", vehicle=self.ctx.vehicles.name_of(vehicle),
                        data=str(dict(data))[:200])  # fmt: skip
            return None
        if spn == 0 and fmi == 0:  # J1939: an all-zero DTC means no active faults
            for key in self.ctx.book.keys_open("dtc", vehicle):
                self._clear_dtc(vehicle, key, ts, "DM1 reports no active faults", out)
            return None
        key = f"{spn}/{fmi}"
        if data.get("active", True) is False:
            self._clear_dtc(vehicle, key, ts, "reported inactive", out)
            return None
        lamp = str(data.get("lamp", "")).lower()
        severity = LAMP_SEVERITY.get(lamp, Severity.INFO)
        evidence = {
            "spn": spn,
            "fmi": fmi,
            "occurrence": data.get("occurrence", data.get("oc")),
            "lamp": lamp,
        }
        current = self.ctx.book.get("dtc", vehicle, key)
        if current is None:
            a = self.ctx.book.open(
                "dtc", vehicle, ts, severity,
                message or f"DTC SPN {spn} FMI {fmi} ({lamp or 'no'} lamp)",
                started_at=ts, evidence=evidence, key=key,
            )  # fmt: skip
        elif current.severity != severity:
            a = self.ctx.book.update("dtc", vehicle, ts, key, severity=severity, evidence=evidence)
        else:
            a = None
        if a is not None:
            out.append(a)
        return key

    def _clear_dtc(self, vehicle: int, key: str, ts: int, why: str, out: list[Alert]) -> None:
        a = self.ctx.book.clear("dtc", vehicle, ts, key, evidence={"cleared_because": why})
        if a is not None:
            out.append(a)
