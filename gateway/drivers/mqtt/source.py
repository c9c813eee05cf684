"""MqttSource: bus units' MQTT messages in, columnar bundles out.

    MqttClient --on_message(topic, payload)--> route (topic cache) --> handler per kind
        pvt     --> FixBatch row                  (vehicle interned in registry.vehicles)
        can     --> ReadingBatch rows bus/<id>/<quantity>   (J1939 frames via the DBC)
        dtc     --> Event "dtc" with the active (SPN, FMI, OC, lamp) list
        alert   --> Event of the alert's kind ("panic", "tamper", ...)
        health  --> ReadingBatch rows (unit battery, main power, GSM signal)
        ais140  --> FixBatch row + readings + events, by vendor profile
        refused --> Reject(reason) and a count per reason
    columns accumulate in array.array; every `flush_messages` messages or `flush_ms`
    they become one Bundle (live) and, if any history data came, a second Bundle.

History data (AIS-140 'H' packets, JSON `"hist": true`) is stored like live data
but emitted in its own bundle, and its events carry `data["live"] = False`, so
that rules do not raise live alerts from a unit's buffered backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np

from gateway.batch import FixBatch, Quality, ReadingBatch
from gateway.bundle import Bundle
from gateway.drivers import ais140
from gateway.drivers.mqtt import j1939
from gateway.drivers.mqtt.payloads import (
    CAN_QUANTITIES,
    AlertMsg,
    Can,
    CanFrame,
    Dtc,
    Health,
    Limits,
    PayloadError,
    Pvt,
    check,
    check_time,
)
from gateway.drivers.mqtt.sequence import SequenceTracker
from gateway.drivers.mqtt.topics import KINDS, TopicError, parse_topic, subscription
from gateway.events import Event, Reject
from gateway.logs import get_logger
from gateway.metrics import Measurement
from gateway.mqtt.client import MqttClient, MqttSettings
from gateway.mqtt.topics import check_prefix
from gateway.parts import Emit, Wiring
from gateway.streams import StreamRegistry

log = get_logger("gateway.mqtt")

KMH_PER_MS: Final = 3.6
NAN: Final = float("nan")

# quantities the driver writes besides CAN_QUANTITIES: (unit, kind)
UNIT_QUANTITIES: Final[dict[str, tuple[str, str]]] = {
    "unit_battery_v": ("V", "voltage"),
    "unit_battery_pct": ("%", "level"),
    "main_v": ("V", "voltage"),
    "gsm_csq": ("", "signal"),
    "ignition": ("", "state"),
}
CAN_KINDS: Final[dict[str, str]] = {
    "rpm": "speed",
    "coolant_c": "temperature",
    "oil_kpa": "pressure",
    "fuel_lph": "flow",
    "battery_v": "voltage",
    "speed_kmh": "speed",
    "fuel_pct": "level",
}


@dataclasses.dataclass(frozen=True, slots=True)
class MqttSourceSettings:
    broker: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    prefix: str = dataclasses.field(default="pmpml", metadata={"help": "topic prefix"})
    flush_messages: int = dataclasses.field(
        default=2000, metadata={"help": "emit a bundle after this many messages"}
    )
    flush_ms: int = dataclasses.field(
        default=250, metadata={"help": "or after this long, whichever comes first"}
    )
    ack_window: int = dataclasses.field(
        default=16,
        metadata={
            "help": "flush when this many QoS 1 messages await their PUBACK; keep it at or "
            "below the broker's max_inflight_messages (Mosquitto: 20 unless set)"
        },
    )
    max_payload_bytes: int = 16_384
    max_future_s: float = dataclasses.field(
        default=300.0, metadata={"help": "refuse timestamps further ahead of our clock"}
    )
    history_window_s: float = dataclasses.field(
        default=7 * 86_400.0, metadata={"help": "refuse buffered data older than this"}
    )
    sequence_window: int = 256
    ais140_profiles: str = dataclasses.field(
        default="",
        metadata={"help": "AIS-140 vendor profiles TOML; default gateway/drivers/ais140's"},
    )
    dbc: str = dataclasses.field(default="", metadata={"help": "J1939 DBC; default built-in"})
    max_rejects_per_flush: int = 1000

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        if self.ack_window < 1:
            raise ValueError("ack_window must be at least 1")
        if self.flush_messages < 1 or self.flush_ms < 1:
            raise ValueError("flush_messages and flush_ms must be at least 1")
        if self.max_future_s < 0 or self.history_window_s <= 0:
            raise ValueError("max_future_s must be >= 0 and history_window_s > 0")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_payload_bytes, self.max_future_s, self.history_window_s)


@dataclasses.dataclass(slots=True)
class MqttSourceStats:
    messages: int = 0
    fixes: int = 0
    readings: int = 0
    events: int = 0
    rejects: Counter[str] = dataclasses.field(default_factory=Counter)
    rejects_not_kept: int = 0  # counted, but over max_rejects_per_flush so not kept
    history_rows: int = 0
    bundles: int = 0
    gaps_counted: bool = True  # False under a shared subscription: each peer sees a subset


REJECT_LOG_S: Final = 60.0  # a summary of rejects is logged at most this often
FIX_ROW: Final = struct.Struct("<qiddffB")  # ts, vehicle, lat, lon, speed, heading, fix
READING_ROW: Final = struct.Struct("<qidB")  # ts, stream, value, quality
_FIX_DTYPE: Final = np.dtype([(name, dtype) for name, dtype in FixBatch.DTYPES.items()])
_READING_DTYPE: Final = np.dtype([(name, dtype) for name, dtype in ReadingBatch.DTYPES.items()])
assert _FIX_DTYPE.itemsize == FIX_ROW.size and _READING_DTYPE.itemsize == READING_ROW.size


class _Rows:
    """Rows packed into bytes as they are decoded (one `struct.pack` per row, no
    object kept per row); `fixes()` and `readings()` turn them into columns."""

    __slots__ = ("fixes_buf", "readings_buf")

    def __init__(self) -> None:
        self.fixes_buf = bytearray()
        self.readings_buf = bytearray()

    def __len__(self) -> int:
        return len(self.fixes_buf) // FIX_ROW.size + len(self.readings_buf) // READING_ROW.size

    def fixes(self) -> FixBatch:
        rows = np.frombuffer(self.fixes_buf, _FIX_DTYPE)
        return FixBatch(*(np.ascontiguousarray(rows[name]) for name in FixBatch.DTYPES))

    def readings(self) -> ReadingBatch:
        rows = np.frombuffer(self.readings_buf, _READING_DTYPE)
        return ReadingBatch(*(np.ascontiguousarray(rows[name]) for name in ReadingBatch.DTYPES))


class _Route:
    """What a topic resolves to, cached so the hot path does one dict lookup."""

    __slots__ = ("asset", "key", "kind", "streams", "vehicle", "vid")

    def __init__(self, vehicle: str, kind: str, vid: int, streams: dict[str, int]) -> None:
        self.vehicle = vehicle
        self.kind = kind
        self.vid = vid
        self.asset = f"bus/{vehicle}"
        self.key = vid * 8 + KINDS.index(kind)  # one sequence counter per unit and kind
        self.streams = streams  # shared by the unit's routes: quantity -> stream id


_pack_fix = FIX_ROW.pack
_pack_reading = READING_ROW.pack
_DecodeError = (PayloadError, ais140.PacketError, j1939.J1939Error, TopicError)
_MAX_ROUTES: Final = 200_000


class MqttSource:
    """The runtime `Source` for the bus fleet (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSourceSettings,
        registry: StreamRegistry,
        *,
        name: str = "mqtt",
        on_raw: Callable[[str, bytes, int], None] | None = None,
    ) -> None:
        self.name = name
        self.on_raw = on_raw  # Wiring.on_raw: each message as received, before decoding
        self.settings = settings
        self.registry = registry
        self.stats = MqttSourceStats(gaps_counted=not settings.broker.share_group)
        self.sequences = SequenceTracker(settings.sequence_window)
        self.client: MqttClient | None = None
        profiles = Path(settings.ais140_profiles) if settings.ais140_profiles else None
        self._ais140 = ais140.Ais140Parser(ais140.load_profiles(profiles) if profiles else None)
        self._j1939 = j1939.J1939Decoder(Path(settings.dbc) if settings.dbc else j1939.DBC_PATH)
        self._limits = settings.limits
        self._routes: dict[str, _Route] = {}
        # per unit, live and history apart: TP.BAM transfers that go on in the next message
        self._bams: dict[tuple[int, bool], j1939.BamAssembler] = {}
        self._streams: dict[int, dict[str, int]] = {}
        self._live = _Rows()
        self._hist = _Rows()
        self._events: list[Event] = []
        self._rejects: list[Reject] = []
        self._unlogged: Counter[str] = Counter()  # rejects since the last mqtt.rejects line
        self._last_reject = ("", "", "")
        self._log_after = float("-inf")
        self.clock = time.monotonic  # for the reject log's rate limit
        self._pending = 0
        self._full: asyncio.Event | None = None
        self._handlers: dict[str, Callable[[_Route, bytes, int], None]] = {
            "pvt": self._pvt,
            "can": self._can,
            "dtc": self._dtc,
            "alert": self._alert,
            "health": self._health,
            "ais140": self._ais140_packet,
        }

    @classmethod
    def create(cls, name: str, settings: MqttSourceSettings, wiring: Wiring) -> MqttSource:
        settings.broker.password()  # an unreadable secret stops the start, not the connect
        return cls(settings, wiring.registry, name=name, on_raw=wiring.on_raw)

    @property
    def topics(self) -> list[str]:
        return [subscription(self.settings.prefix, self.settings.broker.share_group)]

    async def run(self, emit: Emit) -> None:
        self._full = asyncio.Event()
        self.client = MqttClient(self.settings.broker, self.topics, self.handle)
        flush_s = self.settings.flush_ms / 1000
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.client.run(), name=f"{self.name}:client")
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(flush_s):
                            await self._full.wait()
                    self._full.clear()
                    await self._flush(emit)
                    self.client.resume()
        finally:
            # on stop, what was decoded still goes out; unacknowledged, the broker
            # also keeps it for the next start, and the sinks' keys drop the copy
            await self._flush(emit)

    async def _flush(self, emit: Emit) -> None:
        """Emit what was decoded, then acknowledge those messages to the broker: a
        message is acknowledged only once it is in the outbox."""
        self._log_rejects()  # the tail of a burst of rejects is told too
        assert self.client is not None
        received = self.client.take_received()
        for bundle in self.take():
            await emit(bundle)
        self.client.ack(received)

    # -- decoding (synchronous; called by the client for each message) ------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """Decode one message into the accumulators, or record why it was refused."""
        self.stats.messages += 1
        now = time.time_ns()
        if self.on_raw is not None:
            self.on_raw(topic, payload, now)
        try:
            route = self._routes.get(topic)
            if route is None:
                route = self._route(topic)
            self._handlers[route.kind](route, payload, now)
        except _DecodeError as err:
            self._reject(now, topic, err.reason, str(err), payload)
        self._pending += 1
        acks_due = self.client is not None and self.client.unacked >= self.settings.ack_window
        if (self._pending >= self.settings.flush_messages or acks_due) and self._full is not None:
            self._full.set()
            if self._pending >= 4 * self.settings.flush_messages and self.client is not None:
                self.client.pause()  # the flush is behind: let TCP push back on the broker

    def take(self) -> list[Bundle]:
        """The accumulated rows as bundles (live first), and start afresh."""
        live, hist = self._live, self._hist
        events, rejects = self._events, self._rejects
        self._live, self._hist, self._events, self._rejects = _Rows(), _Rows(), [], []
        self._pending = 0
        out = []
        if len(live) or events or rejects:
            out.append(
                Bundle(
                    readings=live.readings(),
                    fixes=live.fixes(),
                    events=tuple(events),
                    rejects=tuple(rejects),
                )
            )
        if len(hist):
            self.stats.history_rows += len(hist)
            out.append(Bundle(readings=hist.readings(), fixes=hist.fixes(), live=False))
        for bundle in out:
            self.stats.fixes += len(bundle.fixes)
            self.stats.readings += len(bundle.readings)
        self.stats.events += len(events)
        self.stats.bundles += len(out)
        return out

    def _route(self, topic: str) -> _Route:
        parsed = parse_topic(topic, self.settings.prefix)
        vid = self.registry.vehicles.intern(parsed.vehicle)
        streams = self._streams.setdefault(vid, {})
        route = _Route(parsed.vehicle, parsed.kind, vid, streams)
        if len(self._routes) < _MAX_ROUTES:
            self._routes[topic] = route
        return route

    def _stream(self, route: _Route, quantity: str) -> int:
        found = route.streams.get(quantity)
        if found is None:
            if quantity in CAN_QUANTITIES:
                unit, kind = CAN_QUANTITIES[quantity][0], CAN_KINDS[quantity]
            else:
                unit, kind = UNIT_QUANTITIES[quantity]
            found = self.registry.register(f"{route.asset}/{quantity}", unit, kind)
            route.streams[quantity] = found
        return found

    def _reject(self, now: int, topic: str, reason: str, detail: str, payload: bytes) -> None:
        self.stats.rejects[reason] += 1
        self._unlogged[reason] += 1
        self._last_reject = (topic, reason, detail)
        self._log_rejects()
        if len(self._rejects) < self.settings.max_rejects_per_flush:
            self._rejects.append(Reject(now, f"mqtt:{topic}", reason, detail, payload))
        else:
            self.stats.rejects_not_kept += 1

    def _log_rejects(self) -> None:
        """The first reject at once, then a summary at most every REJECT_LOG_S seconds."""
        now = self.clock()
        if not self._unlogged or now < self._log_after:
            return
        topic, reason, detail = self._last_reject
        log.warning(
            "mqtt.rejects",
            source=self.name,
            counts=",".join(f"{r}={n}" for r, n in sorted(self._unlogged.items())),
            last_topic=topic,
            last_reason=reason,
            last_detail=detail[:200],
            next_summary_s=REJECT_LOG_S,
        )
        self._unlogged.clear()
        self._log_after = now + REJECT_LOG_S

    def measurements(self) -> Iterator[Measurement]:
        labels = (("source", self.name),)
        s = self.stats
        up = self.client is not None and self.client.stats.state == "connected"
        yield Measurement("mqtt_connected", float(up), "1 while connected", labels=labels)
        yield Measurement("mqtt_messages_total", s.messages, "messages received", "counter", labels)
        yield Measurement("mqtt_fixes_total", s.fixes, "GPS fixes decoded", "counter", labels)
        yield Measurement("mqtt_readings_total", s.readings, "readings decoded", "counter", labels)
        yield Measurement(
            "mqtt_history_rows_total", s.history_rows, "rows a unit sent late", "counter", labels
        )
        for reason, count in sorted(s.rejects.items()):
            yield Measurement(
                "mqtt_rejects_total", count, "messages refused, by reason", "counter",
                (*labels, ("reason", reason)),
            )  # fmt: skip
        yield Measurement(
            "mqtt_rejects_not_kept_total",
            s.rejects_not_kept,
            "rejects counted but not stored (over max_rejects_per_flush)",
            "counter",
            labels,
        )

    def _fresh(self, route: _Route, seq: int | None) -> None:
        if seq is not None and not self.sequences.observe(route.key, seq):
            raise PayloadError("duplicate", f"sequence number {seq} already received")

    def _reading(self, cols: _Rows, ts: int, stream: int, value: float, quality: int) -> None:
        cols.readings_buf += _pack_reading(ts, stream, value, quality)

    def _signal(self, cols: _Rows, route: _Route, ts: int, quantity: str, value: float) -> None:
        _, lo, hi = CAN_QUANTITIES[quantity]
        quality = 0 if lo <= value <= hi else Quality.OUT_OF_RANGE
        self._reading(cols, ts, self._stream(route, quantity), value, quality)

    def _pvt(self, route: _Route, payload: bytes, now: int) -> None:
        msg = check("pvt", payload, route.vehicle, now, self._limits)
        assert isinstance(msg, Pvt)
        self._fresh(route, msg.seq)
        cols = self._hist if msg.hist else self._live
        speed, heading = msg.speed_kmh, msg.heading
        cols.fixes_buf += _pack_fix(
            msg.ts * 1_000_000,
            route.vid,
            msg.lat,
            msg.lon,
            NAN if speed is None else speed / KMH_PER_MS,
            NAN if heading is None else heading,
            msg.fix,
        )

    def _can(self, route: _Route, payload: bytes, now: int) -> None:
        msg = check("can", payload, route.vehicle, now, self._limits)
        assert isinstance(msg, Can)
        self._fresh(route, msg.seq)  # first, so a resent message feeds no TP.BAM twice
        decoded = None
        if msg.frames:
            decoded = self._frames(route, msg.frames, msg.ts, msg.hist, now)  # may raise
        ts = msg.ts * 1_000_000
        cols = self._hist if msg.hist else self._live
        for quantity, value in (msg.signals or {}).items():
            self._signal(cols, route, ts, quantity, value)
        if decoded is not None:
            for quantity, value in decoded.signals:
                self._signal(cols, route, ts, quantity, value)
            if decoded.faults is not None:
                self._dtc_event(route, ts, list(decoded.faults), not msg.hist, msg.seq)

    def _dtc(self, route: _Route, payload: bytes, now: int) -> None:
        msg = check("dtc", payload, route.vehicle, now, self._limits)
        assert isinstance(msg, Dtc)
        self._fresh(route, msg.seq)
        faults: list[j1939.Fault] = []
        if msg.frames:
            decoded = self._frames(route, msg.frames, msg.ts, False, now)
            if decoded.faults is None and msg.faults is None:
                return  # a DM1 over TP.BAM that goes on in the next message
            faults.extend(decoded.faults or ())
        if msg.faults is not None:
            lamps = j1939.Lamps(msg.lamps.mil, msg.lamps.red, msg.lamps.amber, msg.lamps.protect)
            faults.extend(j1939.Fault(f.spn, f.fmi, f.oc, lamps) for f in msg.faults)
        self._dtc_event(route, msg.ts * 1_000_000, faults, True, msg.seq)

    def _frames(
        self, route: _Route, frames: list[CanFrame], ts_ms: int, hist: bool, now: int
    ) -> j1939.Decoded:
        bam = self._bams.get((route.vid, hist))
        if bam is None:
            bam = self._bams[route.vid, hist] = j1939.BamAssembler()
        try:
            return self._j1939.decode_frames(
                [(f.id, bytes.fromhex(f.data)) for f in frames], bam, ts_ms
            )
        finally:
            topic = f"{self.settings.prefix}/v1/{route.vehicle}/{route.kind}"
            for detail in bam.abandoned:
                self._reject(now, topic, "bad_tp", detail, b"")
            bam.abandoned.clear()

    def _dtc_event(
        self, route: _Route, ts: int, faults: list[j1939.Fault], live: bool, seq: int | None
    ) -> None:
        lamps = faults[0].lamps if faults else j1939.Lamps()
        data = {
            "faults": [{"spn": f.spn, "fmi": f.fmi, "oc": f.oc, "lamp": f.lamp} for f in faults],
            "lamps": dataclasses.asdict(lamps),
            "live": live,
            "seq": seq,
        }
        text = ", ".join(f"SPN {f.spn} FMI {f.fmi} ({f.lamp})" for f in faults) or "no active DTC"
        self._events.append(Event(ts, route.asset, "dtc", text, data))

    def _alert(self, route: _Route, payload: bytes, now: int) -> None:
        msg = check("alert", payload, route.vehicle, now, self._limits)
        assert isinstance(msg, AlertMsg)
        self._fresh(route, msg.seq)
        data = {"lat": msg.lat, "lon": msg.lon, "live": True, "seq": msg.seq, "via": "json"}
        self._events.append(Event(msg.ts * 1_000_000, route.asset, msg.kind, msg.message, data))

    def _health(self, route: _Route, payload: bytes, now: int) -> None:
        msg = check("health", payload, route.vehicle, now, self._limits)
        assert isinstance(msg, Health)
        self._fresh(route, msg.seq)
        ts = msg.ts * 1_000_000
        cols = self._live
        for quantity, value in (
            ("unit_battery_v", msg.unit_battery_v),
            ("main_v", msg.main_v),
            ("gsm_csq", msg.gsm_csq),
            ("ignition", None if msg.ignition is None else float(msg.ignition)),
        ):
            if value is not None:
                self._reading(cols, ts, self._stream(route, quantity), float(value), 0)

    def _ais140_packet(self, route: _Route, payload: bytes, now: int) -> None:
        packet = self._ais140.parse(payload)
        if isinstance(packet, ais140.Heartbeat):
            if packet.battery_pct is not None:
                stream = self._stream(route, "unit_battery_pct")
                self._reading(self._live, now, stream, packet.battery_pct, 0)
            return
        reg = ais140.normalise_reg(packet.vehicle_reg)
        if reg and reg != ais140.normalise_reg(route.vehicle):
            raise PayloadError(
                "spoofed_vehicle", f"packet vehicle {packet.vehicle_reg!r} on {route.vehicle!r}"
            )
        if isinstance(packet, ais140.Login):
            login = {"imei": packet.imei, "firmware": packet.firmware, "protocol": packet.protocol}
            self._events.append(Event(now, route.asset, "login", "unit logged in", login))
            return
        if packet.ts_ns is not None:
            check_time(packet.ts_ns // 1_000_000, now, self._limits)
        frame = packet.frame_number
        if frame is not None and not self.sequences.observe(route.key, frame):
            raise PayloadError("duplicate", f"frame number {frame} already received")
        ts = packet.ts_ns if packet.ts_ns is not None else now
        cols = self._live if packet.live else self._hist
        if packet.has_position:
            cols.fixes_buf += _pack_fix(
                ts,
                route.vid,
                packet.lat,
                packet.lon,
                NAN if packet.speed_kmh is None else packet.speed_kmh / KMH_PER_MS,
                NAN if packet.heading is None else packet.heading,
                3 if packet.gps_fix else 0,
            )
        for quantity, value in (
            ("main_v", packet.main_v),
            ("unit_battery_v", packet.battery_v),
            ("gsm_csq", packet.gsm_signal),
            ("ignition", packet.ignition),
        ):
            if value is not None:
                self._reading(cols, ts, self._stream(route, quantity), float(value), 0)
        kind = packet.alert_kind
        if kind is not None:
            data: dict[str, Any] = {
                "lat": packet.lat,
                "lon": packet.lon,
                "live": packet.live,
                "seq": frame,
                "via": "ais140",
                "packet_type": packet.packet_type,
                "alert_id": packet.alert_id,
            }
            self._events.append(Event(ts, route.asset, kind, "", data))
