"""Simulated AIS-140 units: each connects over TCP and sends packets in its vendor's shape.

    SimUnit (one per device, round-robin over the shapes)
      connect --> login (waits for the ack if its vendor expects one)
        every period_s: a location packet     every heartbeat_s: a health packet
        faults (kind:unit:at_s[:duration_s]):
          split         each packet in three writes       batch    three packets in one write
          noise         binary bytes before packets       bad_checksum  checksums corrupted
          panic         the emergency button is pressed   history  out of coverage, then the
          reconnect     the connection drops, and back               backlog as H packets

Positions go round a small loop near Swargate, Pune; each unit has its own phase.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import random
from typing import Final, Literal

from firmware_sim.ais140 import encoder

FaultKind = Literal["split", "batch", "noise", "bad_checksum", "panic", "history", "reconnect"]
FAULT_KINDS: Final = ("split", "batch", "noise", "bad_checksum", "panic", "history", "reconnect")
EXPECTS_ACK: Final = frozenset({"xyz123"})
CENTRE: Final = (18.5018, 73.8636)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    unit: int
    at_s: float = 0.0
    duration_s: float = 30.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        parts = text.split(":")
        if len(parts) not in (3, 4) or parts[0] not in FAULT_KINDS:
            raise ValueError(
                f"fault {text!r}: use KIND:UNIT:AT_S[:DURATION_S], KIND one of "
                + ", ".join(FAULT_KINDS)
            )
        try:
            numbers = [float(p) for p in parts[2:]]
            unit = int(parts[1])
        except ValueError:
            raise ValueError(
                f"fault {text!r}: UNIT is an integer, AT_S and DURATION_S seconds"
            ) from None
        return cls(parts[0], unit, *numbers)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class UnitsSettings:
    host: str = "127.0.0.1"
    port: int = 5027
    devices: int = 10
    period_s: float = 10.0
    heartbeat_s: float = 60.0
    seed: int = 1
    first: int = 0  # the first unit's number: units first .. first + devices - 1
    shapes: tuple[str, ...] = tuple(encoder.SHAPES)
    faults: tuple[Fault, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.shapes) - set(encoder.SHAPES)
        if unknown or not self.shapes:
            raise ValueError(f"shapes {sorted(unknown)}: choose from {', '.join(encoder.SHAPES)}")
        if self.devices < 1 or self.period_s <= 0 or self.heartbeat_s <= 0:
            raise ValueError("devices must be at least 1, period_s and heartbeat_s more than 0")


def imei_of(index: int, seed: int) -> str:
    return f"86{seed % 1000:03d}{index:010d}"


def vehicle_of(index: int) -> str:
    return f"MH12-PM-{index + 1:04d}"


def vehicles(settings: UnitsSettings) -> dict[str, str]:
    """IMEI -> vehicle id, for the gateway's [ais140.vehicles]."""
    numbers = range(settings.first, settings.first + settings.devices)
    return {imei_of(i, settings.seed): vehicle_of(i) for i in numbers}


@dataclasses.dataclass(slots=True)
class SimStats:
    connects: int = 0
    packets: int = 0
    acks: int = 0
    failures: int = 0  # connections refused or dropped


class SimUnit:
    def __init__(self, index: int, settings: UnitsSettings, stats: SimStats) -> None:
        self.index = index
        self.settings = settings
        self.stats = stats
        self.shape = settings.shapes[index % len(settings.shapes)]
        self.imei = imei_of(index, settings.seed)
        self.reg = vehicle_of(index).replace("-", "")
        self.rng = random.Random(f"{settings.seed}:{index}")
        self.phase = self.rng.uniform(0, 2 * math.pi)
        self.frame = 0
        self.backlog: list[encoder.Fix] = []
        self.dropped: set[Fault] = set()  # reconnect faults already done
        self.started = 0.0

    def _active(self, kind: str, t: float) -> Fault | None:
        for f in self.settings.faults:
            if f.kind == kind and f.unit == self.index and f.at_s <= t < f.at_s + f.duration_s:
                return f
        return None

    def fix(self, t: float, *, live: bool = True, panic: bool = False) -> encoder.Fix:
        self.frame = self.frame % 999_999 + 1
        angle = self.phase + t / 240.0  # one loop in about 25 minutes
        lat = CENTRE[0] + 0.01 * math.sin(angle)
        lon = CENTRE[1] + 0.01 * math.cos(angle)
        heading = (math.degrees(-angle) + 360.0) % 360.0
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return encoder.Fix(self.imei, self.reg, now, lat, lon, 28.0, heading, self.frame,
                           live, panic)  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.started = loop.time()
        await asyncio.sleep(self.rng.uniform(0, min(self.settings.period_s, 2.0)))
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(
                    self.settings.host, self.settings.port
                )
            except OSError:
                self.stats.failures += 1
                await asyncio.sleep(1.0)
                continue
            self.stats.connects += 1
            try:
                await self._session(reader, writer, stop)
            except (ConnectionError, TimeoutError):
                self.stats.failures += 1
            finally:
                writer.close()

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        writer.write(encoder.login(self.shape, self.imei, self.reg) + b"\r\n")
        await writer.drain()
        if self.shape in EXPECTS_ACK:
            await asyncio.wait_for(reader.readline(), 10.0)
            self.stats.acks += 1
        batch: list[bytes] = []
        last_beat = loop.time()
        while not stop.is_set():
            t = loop.time() - self.started
            drop = self._active("reconnect", t)
            if drop is not None and drop not in self.dropped:
                self.dropped.add(drop)
                return
            out = self._packets(t)
            if loop.time() - last_beat >= self.settings.heartbeat_s:
                out.append(encoder.heartbeat(self.shape, self.imei))
                last_beat = loop.time()
            batch += out
            if not (self._active("batch", t) and len(batch) < 3):
                await self._send(writer, batch, t)
                batch = []
            with_stop = asyncio.ensure_future(stop.wait())
            await asyncio.wait([with_stop], timeout=self.settings.period_s)
            with_stop.cancel()

    def _packets(self, t: float) -> list[bytes]:
        if self._active("history", t):  # out of coverage: the unit keeps its fixes
            self.backlog.append(self.fix(t, live=False))
            return []
        backlog, self.backlog = self.backlog, []
        packets = [encoder.location(self.shape, f) for f in backlog]
        panic = self._active("panic", t) is not None
        packets.append(encoder.location(self.shape, self.fix(t, panic=panic)))
        if self._active("bad_checksum", t):
            packets = [_corrupt(p) for p in packets]
        return packets

    async def _send(self, writer: asyncio.StreamWriter, packets: list[bytes], t: float) -> None:
        if not packets:
            return
        data = b"".join(p + self.rng.choice([b"\r\n", b"\n", b""]) for p in packets) + b"\r\n"
        if self._active("noise", t):
            data = self.rng.randbytes(self.rng.randint(1, 40)).replace(b"$", b"#") + data
        if self._active("split", t):
            cuts = sorted(self.rng.sample(range(1, len(data)), 2))
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                writer.write(data[a:b])
                await writer.drain()
                await asyncio.sleep(0.01)
        else:
            writer.write(data)
            await writer.drain()
        self.stats.packets += len(packets)


def _corrupt(packet: bytes) -> bytes:
    """The packet with the latitude's last digit changed and the checksum left as it was."""
    i = packet.index(b",N,") - 1
    return packet[:i] + (b"1" if packet[i : i + 1] == b"0" else b"0") + packet[i + 1 :]


async def run_units(settings: UnitsSettings, stop: asyncio.Event) -> SimStats:
    stats = SimStats()
    async with asyncio.TaskGroup() as tg:
        for i in range(settings.first, settings.first + settings.devices):
            tg.create_task(SimUnit(i, settings, stats).run(stop), name=f"ais140-unit-{i}")
    return stats
