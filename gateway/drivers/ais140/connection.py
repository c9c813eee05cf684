"""One unit's connection: asyncio protocols that feed the framer as bytes arrive.

    connection_made --> over max_connections? closed at once
    data_received   --> byte bucket (over: pause_reading, resume later)
                    --> Framer.feed --> handler.pieces(unit, pieces, link) --> acks via link
                    --> a packet held with no end yet: linger timer
    linger timer    --> Framer.flush (the unit went quiet after a packet with no terminator)
    idle timer      --> closed as `idle` (also how a half-open connection ends)

Callbacks, not a task per connection: asyncio hands a connection's bytes to
`data_received` before it runs the timers due in the same turn of the loop, so a
busy loop can make the linger late, never early, and a packet still in the
socket is never taken for the end of one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

from gateway.drivers.ais140.framer import Framer, Piece
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.logs import get_logger

log = get_logger("gateway.ais140")


class Disconnect(Exception):
    """The handler wants this unit's connection closed, for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Link(Protocol):
    """Where a unit's acknowledgements go."""

    def write(self, data: bytes) -> None: ...

    def unsent(self) -> int: ...


class Bucket:
    """A token bucket on the handler's clock."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, burst_s: float, now: float) -> None:
        self.rate, self.capacity = rate, rate * burst_s
        self.tokens, self.last = self.capacity, now

    def take(self, amount: float, now: float) -> float:
        """Takes `amount`; the seconds until the bucket is out of debt (0 if it is not)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Unit:
    """What the handler keeps of one connection (or one datagram's sender)."""

    __slots__ = ("bad", "bytes", "framer", "imei", "last_reason", "limited", "packets", "peer")

    def __init__(self, peer: str, settings: Ais140SourceSettings, now: float) -> None:
        self.peer = peer
        self.imei = ""
        self.framer = Framer(settings.max_frame_bytes)
        self.bytes = Bucket(settings.max_bytes_per_s, settings.burst_s, now)
        self.packets = Bucket(settings.max_packets_per_s, settings.burst_s, now)
        self.bad = 0  # bad frames in a row
        self.limited = 0  # rate-limited packets in a row
        self.last_reason = ""


class Handler(Protocol):
    settings: Ais140SourceSettings
    clock: Callable[[], float]

    def pieces(self, unit: Unit, pieces: list[Piece], link: Link) -> None: ...

    def opened(self) -> bool: ...

    def paused(self, unit: Unit, seconds: float) -> None: ...

    def closed(self, unit: Unit, reason: str) -> None: ...


class UnitConnection(asyncio.Protocol):
    def __init__(self, handler: Handler, live: set[UnitConnection]) -> None:
        self.handler = handler
        self.live = live
        self.transport: asyncio.Transport | None = None
        self.unit: Unit | None = None
        self.reason = "closed"
        self.heard = 0.0
        self._idle: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    # -- asyncio's calls ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        s = self.handler.settings
        self.unit = Unit(f"tcp:{host}:{port}", s, self.handler.clock())
        if not self.handler.opened():
            self.reason = "max_connections"
            self.transport.close()
            return
        self.live.add(self)
        loop = asyncio.get_running_loop()
        self.heard = loop.time()
        self._idle = loop.call_later(s.idle_timeout_s, self._on_idle)

    def data_received(self, data: bytes) -> None:
        assert self.unit is not None and self.transport is not None
        loop = asyncio.get_running_loop()
        self.heard = loop.time()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        pause = self.unit.bytes.take(len(data), self.handler.clock())
        if pause > 0:
            self.transport.pause_reading()
            loop.call_later(pause, self._resume)
            self.handler.paused(self.unit, pause)
        self._hand(self.unit.framer.feed(data))
        if self.unit.framer.pending and not self.transport.is_closing():
            self._linger = loop.call_later(self.handler.settings.frame_linger_s, self._on_linger)

    def eof_received(self) -> bool:
        assert self.unit is not None
        self._hand(self.unit.framer.flush())
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._idle, self._linger):
            if timer is not None:
                timer.cancel()
        if exc is not None and self.reason == "closed":
            self.reason = f"connection_error:{type(exc).__name__}"
        if self in self.live:
            self.live.discard(self)
        assert self.unit is not None
        self.handler.closed(self.unit, self.reason)

    # -- Link ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def unsent(self) -> int:
        assert self.transport is not None
        return self.transport.get_write_buffer_size()

    def close(self, reason: str) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.reason = reason
            self.transport.close()

    # -- timers --------------------------------------------------------------------------

    def _hand(self, pieces: list[Piece]) -> None:
        assert self.unit is not None
        if not pieces:
            return
        try:
            self.handler.pieces(self.unit, pieces, self)
        except Disconnect as stop:
            self.close(stop.reason)

    def _resume(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _on_linger(self) -> None:
        assert self.unit is not None
        self._linger = None
        self._hand(self.unit.framer.flush())

    def _on_idle(self) -> None:
        loop = asyncio.get_running_loop()
        left = self.handler.settings.idle_timeout_s - (loop.time() - self.heard)
        if left > 0:
            self._idle = loop.call_later(left, self._on_idle)
            return
        assert self.unit is not None
        self._hand(self.unit.framer.flush())
        self.close("idle")


class _DatagramLink:
    def __init__(self, transport: asyncio.DatagramTransport, addr: tuple[str, int]) -> None:
        self.transport = transport
        self.addr = addr

    def write(self, data: bytes) -> None:
        self.transport.sendto(data, self.addr)

    def unsent(self) -> int:
        return 0


class UnitDatagrams(asyncio.DatagramProtocol):
    """UDP: each datagram holds whole packets; its sender's address is its channel."""

    def __init__(self, handler: Handler, on_datagram: Callable[[], None]) -> None:
        self.handler = handler
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert self.transport is not None
        self.on_datagram()
        host, port = str(addr[0]), int(addr[1])
        unit = Unit(f"udp:{host}:{port}", self.handler.settings, self.handler.clock())
        pieces = [*unit.framer.feed(data), *unit.framer.flush()]
        try:
            self.handler.pieces(unit, pieces, _DatagramLink(self.transport, (host, port)))
        except Disconnect as stop:  # a datagram has no connection to close
            log.warning("ais140.datagram_refused", peer=unit.peer, reason=stop.reason)
