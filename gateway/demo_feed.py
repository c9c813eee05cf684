"""What `gateway demo` prints: its alert feed, the fleet's line, and the fault table.

    AlertPrinter (the demo's last stage) --each opened alert--> FaultTable.see
    Injected(what, asset, kinds, at_ns, clock): caught by the first matching alert, or missed
    FaultTable.render()  the table the demo ends with

Two clocks run in one demo: the water network's, simulated at `speed` times real time
from a night a day or two back, and the buses', which is the wall clock. Every time shown
is in the configured zone and says which clock it is on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import TextIO
from zoneinfo import ZoneInfo

from gateway.batch import NS_PER_S
from gateway.bundle import Bundle
from gateway.events import Alert, AlertState

# the alert kinds that catch each fault the bus simulator injects
BUS_FAULT_ALERTS: dict[str, tuple[str, ...]] = {
    "overheat": ("engine_overheat",),
    "panic": ("panic",),
    "gps_jump": ("gps_jump",),
    "dtc": ("dtc",),
    "oil_drop": ("low_oil_pressure",),
    "battery_sag": ("battery_low",),
    "silence": ("stale", "offline"),
    "detour": ("route_deviation",),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Clock:
    """A clock the demo shows times on: the wall (speed 1) or a simulated one."""

    label: str  # "wall", "sim 600x"
    speed: float  # its seconds per real second
    zone: ZoneInfo

    @classmethod
    def wall(cls, zone: str) -> Clock:
        return cls("wall", 1.0, ZoneInfo(zone))

    @classmethod
    def simulated(cls, speed: float, zone: str) -> Clock:
        return cls(f"sim {speed:g}x", speed, ZoneInfo(zone))

    def show(self, ns: int) -> str:
        """'Thu 01:05:00 IST sim 600x': the zone's local time, and which clock."""
        local = dt.datetime.fromtimestamp(ns / NS_PER_S, self.zone)
        return f"{local:%a %H:%M:%S %Z} {self.label}"

    def span(self, ns: int) -> str:
        """A delay on this clock; on a simulated one with its real-time equivalent."""
        s = ns / NS_PER_S
        if self.speed == 1.0:
            return f"{s:.1f} s"
        minutes = round(s / 60)
        sim = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
        return f"{sim} sim ({s / self.speed:.1f} s real)"


@dataclasses.dataclass(frozen=True, slots=True)
class Injected:
    """One fault put into a simulator: caught by the first alert of one of `kinds` on
    `asset` that opens at or after `at_ns` (data time, on `clock`)."""

    what: str
    asset: str
    kinds: tuple[str, ...]
    at_ns: int
    clock: Clock

    def caught_by(self, alert: Alert) -> bool:
        return (
            alert.state is AlertState.OPENED
            and alert.kind in self.kinds
            and alert.asset == self.asset
            and alert.opened_at >= self.at_ns
        )


class FaultTable:
    """Each injected fault and the alert that caught it, filled as alerts open."""

    def __init__(self, faults: Iterable[Injected]) -> None:
        self.faults = list(faults)
        self.caught: dict[int, Alert] = {}

    def add(self, faults: Iterable[Injected]) -> None:
        self.faults.extend(faults)

    def see(self, alert: Alert) -> None:
        for i, fault in enumerate(self.faults):
            if i not in self.caught and fault.caught_by(alert):
                self.caught[i] = alert

    def missed(self) -> list[Injected]:
        return [f for i, f in enumerate(self.faults) if i not in self.caught]

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        """(fault, injected at, alert, detected at, delay) per fault; 'missed' when none."""
        out = []
        for i, f in enumerate(self.faults):
            a = self.caught.get(i)
            if a is None:
                out.append((f"{f.what} on {f.asset}", f.clock.show(f.at_ns), "missed", "-", "-"))
                continue
            out.append((
                f"{f.what} on {f.asset}", f.clock.show(f.at_ns), f"{a.kind} {a.asset}",
                f.clock.show(a.opened_at), f.clock.span(a.opened_at - f.at_ns),
            ))  # fmt: skip
        return out

    def render(self) -> str:
        head = ("fault", "injected", "alert", "detected at", "after")
        return _table(head, self.rows())


class AlertPrinter:
    """The demo's last stage: one line per alert as it opens, and as it clears, on the clock
    of the asset (the water network's for a DMA's, the wall's for a bus's)."""

    def __init__(
        self, out: TextIO, faults: FaultTable, *, network: Clock, wall: Clock, dmas: set[str]
    ) -> None:
        self.out = out
        self.faults = faults
        self.network = network
        self.wall = wall
        self.dmas = dmas
        self.opened: set[str] = set()

    def clock_of(self, asset: str) -> Clock:
        return self.network if asset.split("/", maxsplit=1)[0] in self.dmas else self.wall

    def process(self, bundle: Bundle) -> Bundle:
        for a in bundle.alerts:
            if a.state is AlertState.UPDATED:
                continue
            if a.state is AlertState.OPENED:
                self.opened.add(a.id)
                self.faults.see(a)
            elif a.id not in self.opened:
                continue  # opened while the detectors learned the history
            at = a.cleared_at if a.cleared_at is not None else a.opened_at
            detail = a.message or ", ".join(f"{k}={v}" for k, v in list(a.evidence.items())[:3])
            print(
                f"  ALERT {a.state.value:7s} {a.severity.name.lower():8s} {a.kind:16s} "
                f"{a.asset:24s} {self.clock_of(a.asset).show(at):26s}  {detail}",
                file=self.out,
                flush=True,
            )
        return bundle


class FleetView:
    """The demo's view of the buses: each one's latest speed, for the summary line."""

    def __init__(self) -> None:
        self.speed_kmh: dict[int, float] = {}
        self.fixes = 0

    def process(self, bundle: Bundle) -> Bundle:
        f = bundle.fixes
        self.fixes += len(f)
        for vehicle, speed in zip(f.vehicle.tolist(), f.speed.tolist(), strict=True):
            self.speed_kmh[vehicle] = speed * 3.6
        return bundle

    def summary(self) -> str:
        speeds = [v for v in self.speed_kmh.values() if not math.isnan(v)]
        moving = sum(v > 2 for v in speeds)
        mean = sum(speeds) / len(speeds) if speeds else 0.0
        return f"buses {len(self.speed_kmh)} reporting, {moving} moving at {mean:4.1f} km/h"


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join(
        "  " + "  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *body)
    )
