"""The retained per-vehicle status: last fix, health summary, open alerts.

    bundles --StatusBoard.process (a Stage; passes bundles through)--> per-vehicle state
    StatusBoard.messages(changed_only=True) --> [(<prefix>/v1/vehicles/<id>/status, JSON)]

An MQTT sink publishes these retained, so a dashboard that subscribes gets every
bus's latest state at once. The board never raises alerts itself; it shows the
alerts other stages put in the bundle (kind, severity, open or cleared).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np

from gateway.bundle import Bundle
from gateway.mqtt.topics import DEFAULT_PREFIX, status_topic
from gateway.streams import StreamRegistry

_ENCODER = msgspec.json.Encoder()


class StatusFix(msgspec.Struct, frozen=True, kw_only=True):
    ts: int
    lat: float
    lon: float
    speed_kmh: float | None = None
    heading: float | None = None


class StatusAlert(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    severity: Literal["info", "warning", "critical"]
    opened_at: int


class VehicleStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The retained message on `<prefix>/v1/vehicles/<id>/status` (published by the gateway)."""

    v: int
    vehicle: str
    ts: int
    last_fix: StatusFix | None = None
    health: dict[str, float] = {}
    open_alerts: list[StatusAlert] = []


class StatusBoard:
    """Keeps each vehicle's latest state from the bundles that pass through it."""

    def __init__(self, registry: StreamRegistry, prefix: str = DEFAULT_PREFIX) -> None:
        self.registry = registry
        self.prefix = prefix
        self._fix: dict[str, StatusFix] = {}
        self._health: dict[str, dict[str, float]] = {}
        self._alerts: dict[str, dict[str, StatusAlert]] = {}
        self._ts: dict[str, int] = {}
        self._changed: set[str] = set()

    def process(self, bundle: Bundle) -> Bundle:
        fixes = bundle.fixes
        if len(fixes):
            # the latest fix per vehicle: the last row of each vehicle after a stable sort by ts
            order = np.argsort(fixes.ts, kind="stable")
            last = {int(v): int(i) for i, v in zip(order, fixes.vehicle[order], strict=True)}
            for vid, i in last.items():
                name = self.registry.vehicles.name_of(vid)
                ts_ms = int(fixes.ts[i]) // 1_000_000
                old = self._fix.get(name)
                if old is not None and old.ts > ts_ms:
                    continue  # history arriving late never replaces a newer fix
                speed, heading = float(fixes.speed[i]), float(fixes.heading[i])
                self._fix[name] = StatusFix(
                    ts=ts_ms,
                    lat=float(fixes.lat[i]),
                    lon=float(fixes.lon[i]),
                    speed_kmh=None if math.isnan(speed) else round(speed * 3.6, 1),
                    heading=None if math.isnan(heading) else heading,
                )
                self._touch(name, ts_ms)
        r = bundle.readings[~np.isnan(bundle.readings.value)]
        if len(r):
            # the latest value of each stream in the bundle: one step per stream, not per row
            order = np.argsort(r.ts, kind="stable")[::-1]
            streams, first = np.unique(r.stream[order], return_index=True)
            latest = order[first]
            for stream, ts, value in zip(
                streams.tolist(), r.ts[latest].tolist(), r.value[latest].tolist(), strict=True
            ):
                info = self.registry.info(stream)
                if info.asset.startswith("bus/"):
                    name = info.asset[4:]
                    self._health.setdefault(name, {})[info.quantity] = value
                    self._touch(name, ts // 1_000_000)
        for alert in bundle.alerts:
            if not alert.asset.startswith("bus/"):
                continue
            name = alert.asset[4:]
            board = self._alerts.setdefault(name, {})
            if alert.is_open:
                board[alert.id] = StatusAlert(
                    id=alert.id,
                    kind=alert.kind,
                    severity=alert.severity.name.lower(),  # type: ignore[arg-type]
                    opened_at=alert.opened_at // 1_000_000,
                )
            else:
                board.pop(alert.id, None)
            self._touch(name, (alert.updated_at or alert.opened_at) // 1_000_000)
        return bundle

    def _touch(self, name: str, ts_ms: int) -> None:
        self._ts[name] = max(self._ts.get(name, 0), ts_ms)
        self._changed.add(name)

    def status(self, vehicle: str) -> VehicleStatus:
        return VehicleStatus(
            v=1,
            vehicle=vehicle,
            ts=self._ts.get(vehicle, 0),
            last_fix=self._fix.get(vehicle),
            health=dict(self._health.get(vehicle, {})),
            open_alerts=sorted(self._alerts.get(vehicle, {}).values(), key=lambda a: a.opened_at),
        )

    def messages(self, changed_only: bool = True) -> list[tuple[str, bytes]]:
        """(topic, payload) for each vehicle changed since the last call (or all)."""
        names = sorted(self._changed if changed_only else self._ts)
        self._changed.clear()
        return [(status_topic(n, self.prefix), _ENCODER.encode(self.status(n))) for n in names]
