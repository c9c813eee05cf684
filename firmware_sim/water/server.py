"""WaterNetworkSim: the water network model served over Modbus TCP and RTU.

    WaterModel --refresh on each request--> SimMeter register images
        --pymodbus SimDevice(action=...)--> ModbusTcpServer, one per meter (127.0.0.1:port)
                                       \\-> ModbusSerialServer on a pty  <--relay (wire time)-->
                                           pty the gateway opens as its serial port

Every request advances the model to the current sim time (real time since
start times `speed`), renders the meter's registers and applies its faults:
slow replies and exception codes in the datastore action; dead slaves, garbage
bytes and CRC errors on the outgoing frame.

    sim = WaterNetworkSim(WaterSimSettings(model=ModelSettings(dmas=2, seed=7)))
    await sim.start()
    sim.devices            # [SimMeter(name="dma-01/inlet", unit_id=1, tcp_port=...)...]
    sim.rtu_port           # e.g. "/dev/pts/5" when rtu=True
    await sim.stop()

    WaterSimSettings(model=ModelSettings(), zone_points=1, hf_logger=False,
                     host="127.0.0.1", tcp=True, tcp_port_base=0, rtu=False,
                     rtu_over_tcp=False, baudrate=0, speed=1.0, faults=())
    WaterNetworkSim(settings: WaterSimSettings = WaterSimSettings(), *,
                    maps: Mapping[str, RegisterMap] | None = None)

The simulator knows nothing of the gateway: gateway.simulated builds the settings
that poll it from `devices` (name, unit_id, tcp_port, profile), `rtu_port` and
`rtu_tcp_port`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.framer.rtu import FramerRTU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.water.devices import FaultSpec, SimMeter
from firmware_sim.water.model import ModelSettings, WaterModel
from firmware_sim.water.registers import RegisterMap, load_maps
from firmware_sim.water.wire import PtyWire

_TABLE = {1: 1, 5: 1, 15: 1, 2: 2, 3: 3, 6: 3, 16: 3, 23: 3, 4: 4}


@dataclasses.dataclass(frozen=True, slots=True)
class WaterSimSettings:
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    zone_points: int = 1  # interior pressure loggers per DMA; the inlet meter has a pressure too
    hf_logger: bool = False  # add a 100 Hz pressure logger per DMA
    host: str = "127.0.0.1"
    tcp: bool = True
    tcp_port_base: int = 0  # 0: ephemeral ports; else meter k listens on base + k
    rtu: bool = False
    rtu_over_tcp: bool = False  # also one TCP port speaking RTU frames for every meter
    baudrate: int = 0  # on the pty, hold each frame for its wire time at this rate; 0: no hold
    speed: float = 1.0  # sim seconds per real second
    faults: tuple[FaultSpec, ...] = ()

    def __post_init__(self) -> None:
        if self.zone_points < 1:
            raise ValueError("zone_points must be >= 1 (each DMA has an interior pressure point)")
        if self.speed <= 0:
            raise ValueError("speed must be positive, e.g. 60 for a minute per second")
        if not (self.tcp or self.rtu or self.rtu_over_tcp):
            raise ValueError("serve over tcp, rtu, rtu_over_tcp or a mix")


def build_meters(settings: WaterSimSettings, maps: Mapping[str, RegisterMap]) -> list[SimMeter]:
    """The meters of every DMA, with unit ids unique across the network (so all
    of them can share one RTU line)."""
    meters: list[SimMeter] = []

    def add(name: str, model: str, dma: int, role: Any, index: int = 0) -> None:
        meters.append(
            SimMeter(name, maps[model], unit_id=len(meters) + 1, dma=dma, role=role, index=index)
        )

    for d in range(settings.model.dmas):
        dma = f"dma-{d + 1:02d}"
        add(f"{dma}/inlet", "emf-flow-meter", d, "inlet")
        for z in range(settings.zone_points):
            add(f"{dma}/pz-{z + 1}", "pressure-logger", d, "zone", z)
        for a in range(settings.model.amr_per_dma):
            add(f"{dma}/amr-{a + 1:03d}", "amr-meter", d, "amr", a)
        if settings.hf_logger:
            add(f"{dma}/hf-1", "hr-pressure-logger", d, "hf")
    names = {m.name for m in meters}
    for fault in settings.faults:
        if fault.device not in names:
            raise ValueError(f"fault on unknown device {fault.device!r}; devices: {sorted(names)}")
    for m in meters:
        m.faults = [f for f in settings.faults if f.device == m.name]
    return meters


def _bound_port(server: ModbusTcpServer) -> int:
    """The port a server listening on port 0 got."""
    listener = typing.cast(asyncio.Server, server.transport)
    return int(listener.sockets[0].getsockname()[1])


class WaterNetworkSim:
    def __init__(
        self,
        settings: WaterSimSettings | None = None,
        *,
        maps: Mapping[str, RegisterMap] | None = None,
    ) -> None:
        self.settings = settings or WaterSimSettings()
        self.maps = dict(maps or load_maps())
        self.model = WaterModel(self.settings.model, zone_points=self.settings.zone_points)
        self.devices = build_meters(self.settings, self.maps)
        self.rtu_port: str | None = None
        self.rtu_tcp_port: int | None = None  # a serial-to-Ethernet converter's port
        self.wire: PtyWire | None = None
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []
        self._t0 = 0.0
        self._garble = random.Random(self.settings.model.seed)
        self._by_unit = {m.unit_id: m for m in self.devices}

    # -- time -------------------------------------------------------------
    def sim_time(self) -> float:
        """Sim seconds since start."""
        return (asyncio.get_running_loop().time() - self._t0) * self.settings.speed

    def restart_clock(self) -> None:
        """Sim time 0 from now, for a caller that needs the ports before its clients are
        ready (`gateway demo` builds its gateway and learns history after `start`)."""
        if self.model.t > 0:
            raise RuntimeError("the network has already served requests; restart before them")
        self._t0 = asyncio.get_running_loop().time()

    def device(self, name: str) -> SimMeter:
        for m in self.devices:
            if m.name == name:
                return m
        raise KeyError(name)

    def set_fault(self, fault: FaultSpec) -> None:
        """Add a fault while running (windows are in sim seconds)."""
        meter = self.device(fault.device)
        meter.faults.append(fault)
        meter.invalidate()

    def clear_faults(self, device: str) -> None:
        meter = self.device(device)
        meter.faults.clear()
        meter.invalidate()

    # -- serving ----------------------------------------------------------
    async def start(self) -> None:
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs each bad request
        self._t0 = asyncio.get_running_loop().time()
        s = self.settings
        try:
            if s.tcp:
                for k, meter in enumerate(self.devices):
                    port = s.tcp_port_base + k if s.tcp_port_base else 0
                    server = ModbusTcpServer(
                        [self._simdevice(meter)],
                        address=(s.host, port),
                        trace_packet=self._tracer("tcp"),
                    )
                    await server.serve_forever(background=True)
                    self._servers.append(server)
                    meter.tcp_port = _bound_port(server)
            if s.rtu_over_tcp:
                converter = ModbusTcpServer(
                    [self._simdevice(m) for m in self.devices],
                    framer=FramerType.RTU,
                    address=(s.host, 0),
                    trace_packet=self._tracer("rtu"),
                )
                await converter.serve_forever(background=True)
                self._servers.append(converter)
                self.rtu_tcp_port = _bound_port(converter)
            if s.rtu:
                self.wire = PtyWire(baudrate=s.baudrate)
                await self.wire.start()
                serial = ModbusSerialServer(
                    [self._simdevice(m) for m in self.devices],
                    port=self.wire.device_path,
                    baudrate=s.baudrate or 115200,
                    timeout=0.1,
                    trace_packet=self._tracer("rtu"),
                )
                await serial.serve_forever(background=True)
                self._servers.append(serial)
                self.rtu_port = self.wire.gateway_path
        except OSError:
            await self.stop()
            raise

    async def stop(self) -> None:
        for server in self._servers:
            await server.shutdown()  # type: ignore[no-untyped-call]
        self._servers.clear()
        if self.wire is not None:
            await self.wire.stop()
            self.wire = None

    async def __aenter__(self) -> WaterNetworkSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _simdevice(self, meter: SimMeter) -> SimDevice:
        def bits(fc: int) -> list[SimData]:
            n = max(16, len(meter.tables[fc]) + 15 & ~15)
            return [SimData(0, count=n, values=False, datatype=DataType.BITS)]

        def regs(fc: int) -> list[SimData]:
            n = max(1, len(meter.tables[fc]))
            return [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)]

        async def action(  # noqa: PLR0917 - pymodbus calls it positionally
            fc: int,
            start: int,
            address: int,
            count: int,
            current: list[int],
            values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return await self._serve(meter, fc, current, address, values)

        return SimDevice(
            id=meter.unit_id, simdata=(bits(1), bits(2), regs(3), regs(4)), action=action
        )

    async def _serve(
        self,
        meter: SimMeter,
        fc: int,
        current: list[int],
        address: int,
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        t = self.sim_time()
        self.model.advance_to(t)
        meter.requests += 1
        slow = meter.fault(t, "slow")
        if slow is not None:
            await asyncio.sleep(slow.delay_s)
        exc = meter.fault(t, "exception")
        if exc is not None:
            return ExcCodes(exc.code)
        table = meter.tables[_TABLE[fc]]
        if values is not None:
            for i, v in enumerate(values):
                if address + i < len(table):
                    table[address + i] = int(v)
            return None
        meter.refresh(self.model, now=t)
        if _TABLE[fc] in (1, 2):
            for r in range(len(current)):
                word = 0
                for b, bit in enumerate(table[r * 16 : r * 16 + 16]):
                    word |= (bit & 1) << b
                current[r] = word
        else:
            current[: len(table)] = table
        return None

    def _tracer(self, kind: Literal["tcp", "rtu"]) -> Any:
        """Faults on the outgoing frame: dead drops it, garbage replaces it with
        random bytes, crc corrupts its checksum (tcp has none: it is cut short),
        wrong_unit answers as another unit."""

        def trace(sending: bool, data: bytes) -> bytes:
            if not sending or len(data) < 3:
                return data
            unit = data[6] if kind == "tcp" else data[0]
            meter = self._by_unit.get(unit)
            if meter is None:
                return data
            t = self.sim_time()
            fault = meter.fault(t, "dead", "garbage", "crc", "wrong_unit")
            if fault is None:
                return data
            if fault.kind == "dead":
                return b""
            if fault.kind == "garbage":
                return bytes(self._garble.randrange(256) for _ in range(len(data)))
            if fault.kind == "wrong_unit":
                other = (unit % 247) + 1
                if kind == "tcp":
                    return data[:6] + bytes([other]) + data[7:]
                body = bytes([other]) + data[1:-2]
                return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
            if kind == "tcp":
                return data[:-2]  # tcp has no CRC: a truncated frame instead
            return data[:-1] + bytes([data[-1] ^ 0x5A])

        return trace
