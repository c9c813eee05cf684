"""Accumulator: decoded packets to columns, events and rejects, taken as bundles.

    Location (live) --> fix row + readings (main_v, unit_battery_v, gsm_csq, ignition)
                        + an event for an alert (panic, tamper, ...)   --> Bundle(live)
    Location (H)    --> the same rows, events with data["live"] = False --> Bundle(live=False)
    Heartbeat       --> unit_battery_pct reading
    Login           --> "login" event
    refused         --> Reject(reason)

The same shape of output as the MQTT driver's `ais140` topic, so the stages treat
a bus alike however its unit is connected.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import numpy as np

from gateway.batch import FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.drivers.ais140.packets import Heartbeat, Location, Login, Packet
from gateway.events import Event, Reject
from gateway.streams import StreamRegistry

KMH_PER_MS: Final = 3.6
NAN: Final = float("nan")
QUANTITIES: Final[dict[str, tuple[str, str]]] = {
    "unit_battery_v": ("V", "voltage"),
    "unit_battery_pct": ("%", "level"),
    "main_v": ("V", "voltage"),
    "gsm_csq": ("", "signal"),
    "ignition": ("", "state"),
}
_FIX: Final = np.dtype(list(FixBatch.DTYPES.items()))
_READING: Final = np.dtype(list(ReadingBatch.DTYPES.items()))

FixRow = tuple[int, int, float, float, float, float, int]
ReadingRow = tuple[int, int, float, int]


@dataclasses.dataclass(slots=True)
class _Rows:
    fixes: list[FixRow] = dataclasses.field(default_factory=list)
    readings: list[ReadingRow] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.fixes) + len(self.readings)

    def bundle(self, **parts: Any) -> Bundle:
        fixes = np.array(self.fixes, dtype=_FIX)
        readings = np.array(self.readings, dtype=_READING)
        return Bundle(
            fixes=FixBatch(*(np.ascontiguousarray(fixes[n]) for n in FixBatch.DTYPES)),
            readings=ReadingBatch(
                *(np.ascontiguousarray(readings[n]) for n in ReadingBatch.DTYPES)
            ),
            **parts,
        )


class Accumulator:
    """Rows since the last `take`; one per source, used from the event loop only."""

    def __init__(self, registry: StreamRegistry, source: str, max_rejects: int = 1000) -> None:
        self.registry = registry
        self.source = source
        self.max_rejects = max_rejects
        self._streams: dict[tuple[str, str], int] = {}
        self._live = _Rows()
        self._hist = _Rows()
        self._events: list[Event] = []
        self._rejects: list[Reject] = []
        self.rejects_not_kept = 0  # counted by the source, but over max_rejects, so not kept
        self.packets = 0

    def __len__(self) -> int:
        return self.packets

    def add(self, packet: Packet, vehicle: str, now: int) -> None:
        """One decoded packet of `vehicle`, received at `now` (ns)."""
        self.packets += 1
        asset = f"bus/{vehicle}"
        if isinstance(packet, Heartbeat):
            if packet.battery_pct is not None:
                stream = self._stream(vehicle, "unit_battery_pct")
                self._live.readings.append((now, stream, packet.battery_pct, 0))
            return
        if isinstance(packet, Login):
            data = {"imei": packet.imei, "firmware": packet.firmware, "vendor": packet.vendor}
            self._events.append(Event(now, asset, "login", "unit logged in", data))
            return
        self._location(packet, vehicle, asset, now)

    def _location(self, packet: Location, vehicle: str, asset: str, now: int) -> None:
        ts = packet.ts_ns if packet.ts_ns is not None else now
        rows = self._live if packet.live else self._hist
        if packet.has_position:
            vid = self.registry.vehicles.intern(vehicle)
            speed = NAN if packet.speed_kmh is None else packet.speed_kmh / KMH_PER_MS
            heading = NAN if packet.heading is None else packet.heading
            fix = 3 if packet.gps_fix else 0
            rows.fixes.append((ts, vid, packet.lat, packet.lon, speed, heading, fix))
        for quantity, value in (
            ("main_v", packet.main_v),
            ("unit_battery_v", packet.battery_v),
            ("gsm_csq", packet.gsm_signal),
            ("ignition", packet.ignition),
        ):
            if value is not None:
                rows.readings.append((ts, self._stream(vehicle, quantity), float(value), 0))
        kind = packet.alert_kind
        if kind is not None:
            data = {
                "lat": packet.lat if packet.has_position else None,
                "lon": packet.lon if packet.has_position else None,
                "live": packet.live,
                "seq": packet.frame_number,
                "via": "ais140",
                "packet_type": packet.packet_type,
                "alert_id": packet.alert_id,
                "imei": packet.imei,
            }
            self._events.append(Event(ts, asset, kind, "", data))

    def reject(self, now: int, channel: str, reason: str, detail: str, payload: bytes) -> None:
        if len(self._rejects) < self.max_rejects:
            self._rejects.append(Reject(now, f"{self.source}:{channel}", reason, detail, payload))
        else:
            self.rejects_not_kept += 1

    def take(self) -> list[Bundle]:
        """The rows as bundles (live first, then history), and start afresh."""
        live, hist, events, rejects = self._live, self._hist, self._events, self._rejects
        self._live, self._hist, self._events, self._rejects = _Rows(), _Rows(), [], []
        self.packets = 0
        out = []
        if len(live) or events or rejects:
            out.append(live.bundle(events=tuple(events), rejects=tuple(rejects)))
        if len(hist):
            out.append(hist.bundle(live=False))
        return out

    def _stream(self, vehicle: str, quantity: str) -> int:
        found = self._streams.get((vehicle, quantity))
        if found is None:
            unit, kind = QUANTITIES[quantity]
            found = self.registry.register(f"bus/{vehicle}/{quantity}", unit, kind)
            self._streams[vehicle, quantity] = found
        return found
