"""Ais140Source: AIS-140 tracking units connect over TCP (or send UDP); bundles out.

    unit --TCP--> _serve (one task per connection)
        read --byte rate--> Framer.feed --frames--> Ais140Parser.parse
             --> IMEI -> vehicle (settings.vehicles) --> Accumulator.add
             --> acknowledgement, where the vendor profile says the unit expects one
        refused --> Reject(reason), counted; max_bad_frames in a row --> disconnected
    every flush_ms, every flush_packets packets, or at once for an emergency:
        Accumulator.take() --> Bundle(live) [+ Bundle(live=False) for history] --> emit

One connection cannot stall another: each has its own task, its reads pause when
it exceeds its byte rate, its packets beyond its packet rate are refused
(`rate_limited`; an emergency never is), and a silent or half-open connection is
closed after idle_timeout_s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, cast

from gateway.drivers.ais140.accumulator import Accumulator
from gateway.drivers.ais140.framer import FrameError, Framer
from gateway.drivers.ais140.packets import Location, Login, Packet, PacketError
from gateway.drivers.ais140.parser import Ais140Parser
from gateway.drivers.ais140.profiles import load_profiles
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.logs import get_logger
from gateway.metrics import Measurement
from gateway.runtime import Emit
from gateway.streams import StreamRegistry

log = get_logger("gateway.ais140")

READ_BYTES: Final = 4096
MAX_UNSENT: Final = 65_536  # acks a unit does not read; past this it is disconnected


@dataclasses.dataclass(slots=True)
class Ais140SourceStats:
    connections: int = 0  # open now
    accepted: int = 0
    packets: int = 0
    datagrams: int = 0
    acks: int = 0
    throttled: int = 0  # reads paused for the byte rate
    rejects: Counter[str] = dataclasses.field(default_factory=Counter)
    disconnects: Counter[str] = dataclasses.field(default_factory=Counter)
    checksums: Counter[str] = dataclasses.field(default_factory=Counter)
    profiles: Counter[str] = dataclasses.field(default_factory=Counter)
    bundles: int = 0


class _Bucket:
    """A token bucket on the source's clock."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate, self.capacity = rate, rate * burst_s
        self.tokens, self.last = self.capacity, now

    def take(self, amount: float, now: float) -> float:
        """Takes `amount`; returns the seconds until the bucket is out of debt (0 if none)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class _Unit:
    """One connection's state."""

    __slots__ = ("bad", "bytes", "framer", "imei", "last_reason", "limited", "packets", "peer")

    def __init__(self, peer: str, settings: Ais140SourceSettings, now: float) -> None:
        self.peer = peer
        self.imei = ""
        self.framer = Framer(settings.max_frame_bytes)
        self.bytes = _Bucket(settings.max_bytes_per_s, settings.burst_s, now)
        self.packets = _Bucket(settings.max_packets_per_s, settings.burst_s, now)
        self.bad = 0  # bad frames in a row
        self.limited = 0  # rate-limited packets in a row
        self.last_reason = ""


class _Disconnect(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Ais140Source:
    """The runtime `Source` for AIS-140 units that connect directly (module docstring)."""

    def __init__(
        self,
        settings: Ais140SourceSettings,
        registry: StreamRegistry,
        *,
        name: str = "ais140",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self.registry = registry
        self.clock = clock
        profiles = load_profiles(Path(settings.profiles)) if settings.profiles else None
        self.parser = Ais140Parser(profiles)
        self.stats = Ais140SourceStats()
        self.accumulator = Accumulator(registry, name, settings.max_rejects_per_flush)
        self.address: tuple[str, int] | None = None  # (host, port) once listening
        self.udp_address: tuple[str, int] | None = None
        self.listening = asyncio.Event()
        self._due: asyncio.Event | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def run(self, emit: Emit) -> None:
        self._due = asyncio.Event()
        s = self.settings
        server = await asyncio.start_server(self._serve, s.host, s.port, limit=s.max_frame_bytes)
        self.address = server.sockets[0].getsockname()[:2]
        if s.udp_port >= 0:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(s.host, s.udp_port)
            )
            self.udp_address = self._udp.get_extra_info("sockname")[:2]
        log.info("ais140.listening", address=self.address, udp=self.udp_address)
        self.listening.set()
        try:
            async with server:
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(s.flush_ms / 1000):
                            await self._due.wait()
                    self._due.clear()
                    await self._flush(emit)
        finally:
            if self._udp is not None:
                self._udp.close()
            self.listening.clear()
            for handler in list(self._handlers):  # the server leaves its connections open
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._flush(emit)

    async def _flush(self, emit: Emit) -> None:
        for bundle in self.accumulator.take():
            self.stats.bundles += 1
            await emit(bundle)

    # -- a connection ----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        unit = _Unit(f"tcp:{host}:{port}", self.settings, self.clock())
        if self.stats.connections >= self.settings.max_connections:
            self.stats.disconnects["max_connections"] += 1
            log.warning("ais140.refused", peer=unit.peer, reason="max_connections")
            writer.close()
            return
        self.stats.connections += 1
        self.stats.accepted += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        reason = "closed"
        try:
            await self._read(unit, reader, writer)
        except _Disconnect as stop:
            reason = stop.reason
        except ConnectionError as err:
            reason = f"connection_error:{type(err).__name__}"
        except asyncio.CancelledError:
            # the source is stopping: end the handler normally, since asyncio's stream
            # callback (3.11) logs a cancelled handler task as an error
            reason = "shutdown"
        self._handlers.discard(handler)
        self.stats.connections -= 1
        self.stats.disconnects[reason] += 1
        level = log.info if reason in ("closed", "idle", "shutdown") else log.warning
        level("ais140.disconnect", peer=unit.peer, imei=unit.imei, reason=reason,
              last_reject=unit.last_reason)  # fmt: skip
        writer.close()
        if reason != "shutdown":
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _read(
        self, unit: _Unit, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while True:
            idle_left = s.idle_timeout_s - (loop.time() - heard)
            wait = min(s.frame_linger_s, idle_left) if unit.framer.pending else idle_left
            try:
                async with asyncio.timeout(max(wait, 0.0)):
                    data = await reader.read(READ_BYTES)
            except TimeoutError:
                if loop.time() - heard >= s.idle_timeout_s:
                    self._pieces(unit, unit.framer.flush(), writer)
                    raise _Disconnect("idle") from None
                self._pieces(unit, unit.framer.flush(), writer)
                continue
            if not data:
                self._pieces(unit, unit.framer.flush(), writer)
                return
            heard = loop.time()
            pause = unit.bytes.take(len(data), self.clock())
            if pause > 0:
                self.stats.throttled += 1
                await asyncio.sleep(pause)
                unit.bytes.tokens = 0.0
            self._pieces(unit, unit.framer.feed(data), writer)

    def _pieces(self, unit: _Unit, pieces: list[bytes | FrameError], writer: _Writer) -> None:
        now = time.time_ns()
        for piece in pieces:
            if isinstance(piece, FrameError):
                self._refuse(unit, now, piece.reason, piece.detail, piece.data)
            else:
                self._packet(unit, piece, now, writer)
            if unit.bad >= self.settings.max_bad_frames:
                raise _Disconnect("garbage")
            if unit.limited >= self.settings.max_bad_frames:
                raise _Disconnect("flood")
        transport = writer.transport
        if isinstance(transport, asyncio.WriteTransport) and (
            transport.get_write_buffer_size() > MAX_UNSENT
        ):
            raise _Disconnect("not_reading")

    def _packet(self, unit: _Unit, data: bytes, now: int, writer: _Writer) -> None:
        try:
            packet = self.parser.parse(data)
            emergency = isinstance(packet, Location) and packet.alert_kind == "panic"
            if not emergency and unit.packets.take(1, self.clock()) > 0:
                unit.limited += 1
                unit.packets.tokens += 1  # a refused packet costs nothing
                raise PacketError("rate_limited", "over max_packets_per_s from this unit")
            vehicle = self._vehicle(unit, packet)
            if isinstance(packet, Location) and packet.ts_ns is not None:
                self._check_time(packet.ts_ns, now)
        except PacketError as err:
            self._refuse(unit, now, err.reason, str(err), data)
            return
        unit.bad = unit.limited = 0
        self.stats.packets += 1
        self.stats.checksums[packet.checksum] += 1
        self.stats.profiles[packet.profile] += 1
        self.accumulator.add(packet, vehicle, now)
        self._ack(packet, writer)
        due = self._due is not None and (
            emergency or len(self.accumulator) >= self.settings.flush_packets
        )
        if due:
            assert self._due is not None
            self._due.set()

    def _vehicle(self, unit: _Unit, packet: Packet) -> str:
        imei = packet.imei or unit.imei
        vehicle = self.settings.vehicles.get(imei)
        if vehicle is None:
            shown = imei or "none"
            raise PacketError("unknown_imei", f"IMEI {shown} belongs to no vehicle in [ais140]")
        unit.imei = imei
        return vehicle

    def _check_time(self, ts_ns: int, now: int) -> None:
        s = self.settings
        if ts_ns > now + int(s.max_future_s * 1e9):
            ahead = (ts_ns - now) / 1e9
            raise PacketError("future_timestamp", f"time is {ahead:.0f} s ahead of ours")
        if ts_ns < now - int(s.history_window_s * 1e9):
            age = (now - ts_ns) / 1e9
            raise PacketError("too_old", f"time is {age:.0f} s old, beyond the history window")

    def _ack(self, packet: Packet, writer: _Writer) -> None:
        profile = self.parser.profiles.get(packet.profile)
        if profile is None:
            return
        template = profile.ack_login if isinstance(packet, Login) else ""
        if packet.type == "heartbeat":
            template = profile.ack_heartbeat
        if template:
            stamp = dt.datetime.now(dt.UTC).strftime("%d%m%Y%H%M%S")
            ack = template.replace("{now}", stamp).replace("{imei}", packet.imei)
            writer.write(ack.encode("ascii") + b"\r\n")
            self.stats.acks += 1

    def _refuse(self, unit: _Unit, now: int, reason: str, detail: str, data: bytes) -> None:
        if reason != "rate_limited":
            unit.bad += 1
        unit.last_reason = reason
        self.stats.rejects[reason] += 1
        channel = f"{unit.peer}:{unit.imei}" if unit.imei else unit.peer
        self.accumulator.reject(now, channel, reason, detail, data)

    def measurements(self) -> Iterator[Measurement]:
        s, labels = self.stats, (("source", self.name),)
        yield Measurement(
            "ais140_connections", s.connections, "units connected now", "gauge", labels
        )
        for name, value, text in (
            ("ais140_packets_total", s.packets, "packets decoded"),
            ("ais140_acks_total", s.acks, "acknowledgements sent"),
            ("ais140_throttled_total", s.throttled, "reads paused for the byte rate"),
        ):
            yield Measurement(name, value, text, "counter", labels)
        for family, counts, text in (
            ("ais140_rejects_total", s.rejects, "packets and frames refused, by reason"),
            ("ais140_disconnects_total", s.disconnects, "connections closed, by reason"),
            ("ais140_checksums_total", s.checksums, "packets by checksum verdict"),
        ):
            for key, value in counts.items():
                yield Measurement(family, value, text, "counter", (*labels, ("reason", key)))


class _UdpWriter:
    """What `_pieces` needs of a writer, for a datagram's sender."""

    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str, int]) -> None:
        self.transport = transport
        self.addr = addr

    def write(self, data: bytes) -> None:
        self.transport.sendto(data, self.addr)


_Writer = asyncio.StreamWriter | _UdpWriter


class _Datagrams(asyncio.DatagramProtocol):
    """UDP: each datagram holds whole packets; the sender's address is its channel."""

    def __init__(self, source: Ais140Source) -> None:
        self.source = source
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert self.transport is not None
        source = self.source
        source.stats.datagrams += 1
        host, port = str(addr[0]), int(addr[1])
        unit = _Unit(f"udp:{host}:{port}", source.settings, source.clock())
        pieces = [*unit.framer.feed(data), *unit.framer.flush()]
        with contextlib.suppress(_Disconnect):  # a datagram has no connection to close
            source._pieces(unit, pieces, _UdpWriter(self.transport, (host, port)))
