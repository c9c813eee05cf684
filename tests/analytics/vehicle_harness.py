"""A harness for the vehicle rule tests: builds bundles from hand-made rows and
runs them through one `VehicleRules` with a clock the test controls. Holds no
tests itself; the test_vehicle_* modules import it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from gateway.analytics.gtfs import GtfsFeed
from gateway.analytics.vehicle import VehicleRules
from gateway.analytics.vehicle_settings import VehicleRulesSettings
from gateway.batch import FixBatch, FixQuality, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, Event
from gateway.streams import StreamRegistry

NS = 1_000_000_000
# 2026-11-27 10:00 IST, inside the default service hours
T0 = int(dt.datetime(2026, 11, 27, 4, 30, tzinfo=dt.UTC).timestamp()) * NS
LAT0, LON0 = 18.5204, 73.8567  # Pune

Fix = tuple[str, float, float, float, float]  # vehicle, t (s after T0), lat, lon, speed m/s
Reading = tuple[str, str, float, float]  # vehicle, quantity, t (s after T0), value


def at(t: float) -> int:
    return T0 + round(t * NS)


class Harness:
    def __init__(
        self, settings: VehicleRulesSettings | None = None, feed: GtfsFeed | None = None
    ) -> None:
        self.registry = StreamRegistry()
        self.now = T0
        self.follow_data = True  # the clock follows the newest data time unless a test sets it
        self.rules = VehicleRules(
            settings or VehicleRulesSettings(), self.registry, feed=feed, clock=lambda: self.now
        )
        self.alerts: list[Alert] = []

    def vid(self, name: str) -> int:
        return self.registry.vehicles.intern(name)

    def fix_batch(self, rows: Sequence[Fix], fix: int = FixQuality.FIX_3D) -> FixBatch:
        return FixBatch(
            np.asarray([at(r[1]) for r in rows], np.int64),
            np.asarray([self.vid(r[0]) for r in rows], np.int32),
            np.asarray([r[2] for r in rows], np.float64),
            np.asarray([r[3] for r in rows], np.float64),
            np.asarray([r[4] for r in rows], np.float32),
            np.full(len(rows), np.nan, np.float32),
            np.full(len(rows), fix, np.uint8),
        )

    def reading_batch(self, rows: Sequence[Reading]) -> ReadingBatch:
        ids = [self.registry.register(f"bus/{r[0]}/{r[1]}") for r in rows]
        return ReadingBatch.of([at(r[2]) for r in rows], ids, [r[3] for r in rows])

    def run(self, bundle: Bundle) -> list[Alert]:
        if self.follow_data:
            times = [*bundle.fixes.ts.tolist(), *bundle.readings.ts.tolist()]
            times += [e.ts for e in bundle.events]
            if times:
                self.now = max(self.now, *times)
        got = list(self.rules.process(bundle).alerts)
        self.alerts.extend(got)
        return got

    def fixes(self, rows: Sequence[Fix]) -> list[Alert]:
        return self.run(Bundle(fixes=self.fix_batch(rows)))

    def readings(self, rows: Sequence[Reading]) -> list[Alert]:
        return self.run(Bundle(readings=self.reading_batch(rows)))

    def events(self, events: Sequence[Event]) -> list[Alert]:
        return self.run(Bundle(events=tuple(events)))

    def of(self, kind: str) -> list[Alert]:
        return [a for a in self.alerts if a.kind == kind]


def states(alerts: Sequence[Alert]) -> list[str]:
    return [a.state.value for a in alerts]
