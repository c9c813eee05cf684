"""Ais140Source: AIS-140 tracking units connect over TCP (or send UDP); bundles out.

    unit --TCP--> UnitConnection (connection.py: byte rate, linger, idle timeout)
        bytes --> Framer.feed --frames--> Ais140Source.pieces --> Ais140Parser.parse
             --> IMEI -> vehicle (settings.vehicles) --> Accumulator.add
             --> acknowledgement, where the vendor profile says the unit expects one
        refused --> Reject(reason), counted; max_bad_frames in a row --> disconnected
    every flush_ms, every flush_packets packets, or at once for an emergency:
        Accumulator.take() --> Bundle(live) [+ Bundle(live=False) for history] --> emit

One connection cannot stall another: its reads pause when it exceeds its byte
rate, its packets beyond its packet rate are refused (`rate_limited`; an
emergency never is), and a silent or half-open connection is closed after
idle_timeout_s.
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
from typing import Final

from gateway.drivers.ais140.accumulator import Accumulator
from gateway.drivers.ais140.connection import Disconnect, Link, Unit, UnitConnection, UnitDatagrams
from gateway.drivers.ais140.framer import FrameError, Piece
from gateway.drivers.ais140.packets import Location, Login, Packet, PacketError
from gateway.drivers.ais140.parser import Ais140Parser
from gateway.drivers.ais140.profiles import load_profiles
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.logs import get_logger
from gateway.metrics import Measurement
from gateway.parts import Emit, Wiring
from gateway.streams import StreamRegistry

log = get_logger("gateway.ais140")

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
        self._live: set[UnitConnection] = set()

    @classmethod
    def create(cls, name: str, settings: Ais140SourceSettings, wiring: Wiring) -> Ais140Source:
        """Loads the vendor profiles now: a bad profile file stops the start."""
        return cls(settings, wiring.registry, name=name)

    async def run(self, emit: Emit) -> None:
        self._due = asyncio.Event()
        s = self.settings
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: UnitConnection(self, self._live), s.host, s.port, backlog=1024
        )
        self.address = server.sockets[0].getsockname()[:2]
        if s.udp_port >= 0:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: UnitDatagrams(self, self._datagram), local_addr=(s.host, s.udp_port)
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
            for conn in list(self._live):  # the server leaves its connections open
                conn.close("shutdown")
            await self._flush(emit)

    def _datagram(self) -> None:
        self.stats.datagrams += 1

    async def _flush(self, emit: Emit) -> None:
        for bundle in self.accumulator.take():
            self.stats.bundles += 1
            await emit(bundle)

    # -- the connections' handler ---------------------------------------------------------

    def opened(self) -> bool:
        """A connection asks to be served; False over max_connections."""
        if self.stats.connections >= self.settings.max_connections:
            self.stats.disconnects["max_connections"] += 1
            log.warning("ais140.refused", reason="max_connections")
            return False
        self.stats.connections += 1
        self.stats.accepted += 1
        return True

    def paused(self, unit: Unit, seconds: float) -> None:
        self.stats.throttled += 1

    def closed(self, unit: Unit, reason: str) -> None:
        if reason == "max_connections":
            return  # counted when refused
        self.stats.connections -= 1
        self.stats.disconnects[reason] += 1
        level = log.info if reason in ("closed", "idle", "shutdown") else log.warning
        level("ais140.disconnect", peer=unit.peer, imei=unit.imei, reason=reason,
              last_reject=unit.last_reason)  # fmt: skip

    def pieces(self, unit: Unit, pieces: list[Piece], link: Link) -> None:
        """Decodes a unit's frames; raises Disconnect when the unit is to be dropped."""
        now = time.time_ns()
        for piece in pieces:
            if isinstance(piece, FrameError):
                self._refuse(unit, now, piece.reason, piece.detail, piece.data)
            else:
                self._packet(unit, piece, now, link)
            if unit.bad >= self.settings.max_bad_frames:
                raise Disconnect("garbage")
            if unit.limited >= self.settings.max_bad_frames:
                raise Disconnect("flood")
        if link.unsent() > MAX_UNSENT:
            raise Disconnect("not_reading")

    def _packet(self, unit: Unit, data: bytes, now: int, link: Link) -> None:
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
        self._ack(packet, link)
        due = self._due is not None and (
            emergency or len(self.accumulator) >= self.settings.flush_packets
        )
        if due:
            assert self._due is not None
            self._due.set()

    def _vehicle(self, unit: Unit, packet: Packet) -> str:
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

    def _ack(self, packet: Packet, link: Link) -> None:
        profile = self.parser.profiles.get(packet.profile)
        if profile is None:
            return
        template = profile.ack_login if isinstance(packet, Login) else ""
        if packet.type == "heartbeat":
            template = profile.ack_heartbeat
        if template:
            stamp = dt.datetime.now(dt.UTC).strftime("%d%m%Y%H%M%S")
            ack = template.replace("{now}", stamp).replace("{imei}", packet.imei)
            link.write(ack.encode("ascii") + b"\r\n")
            self.stats.acks += 1

    def _refuse(self, unit: Unit, now: int, reason: str, detail: str, data: bytes) -> None:
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
            (
                "ais140_rejects_not_kept_total",
                self.accumulator.rejects_not_kept,
                "rejects counted but not kept (over max_rejects_per_flush)",
            ),
        ):
            yield Measurement(name, value, text, "counter", labels)
        for family, counts, text in (
            ("ais140_rejects_total", s.rejects, "packets and frames refused, by reason"),
            ("ais140_disconnects_total", s.disconnects, "connections closed, by reason"),
            ("ais140_checksums_total", s.checksums, "packets by checksum verdict"),
        ):
            for key, value in counts.items():
                yield Measurement(family, value, text, "counter", (*labels, ("reason", key)))
