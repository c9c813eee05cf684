"""Fakes and small builders shared by the whole suite (one module, not copies)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gateway.bundle import Bundle
from gateway.parts import SinkUnavailable
from gateway.streams import StreamRegistry

if TYPE_CHECKING:
    from firmware_sim.water.server import WaterNetworkSim


def numbered_registry(streams: int = 8, vehicles: int = 4) -> StreamRegistry:
    """A registry where stream id i is `test/s<i>/value` and vehicle id i is `BUS-<i>`,
    for batches built with plain integer ids."""
    registry = StreamRegistry()
    for i in range(streams):
        registry.register(f"test/s{i}/value", "u", "test")
    for i in range(vehicles):
        registry.vehicles.intern(f"BUS-{i}")
    return registry


def flow_registry() -> StreamRegistry:
    """One DMA inlet flow meter, `dma-01/inlet/flow_lps`, as stream 0."""
    registry = StreamRegistry()
    registry.register("dma-01/inlet/flow_lps", "L/s", "flow")
    return registry


@dataclasses.dataclass
class MemorySink:
    """A sink that keeps (stream, ts) of every reading written; `down` refuses writes."""

    name: str = "memory"
    down: bool = False
    opened: bool = False
    closed: bool = False
    ts: list[tuple[int, int]] = dataclasses.field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.ts)

    async def open(self) -> None:
        self.opened = True

    async def write(self, bundle: Bundle) -> None:
        if self.down:
            raise SinkUnavailable("connection refused")
        r = bundle.readings
        self.ts.extend(zip(r.stream.tolist(), r.ts.tolist(), strict=True))

    async def close(self) -> None:
        self.closed = True


def sim_devices_toml(sim: WaterNetworkSim, source: str, *, interval: float = 0.2) -> str:
    """`[[sources.<source>.devices]]` tables polling every meter of a running water
    simulator on the line named "sim"."""
    return "".join(
        f"""
[[sources.{source}.devices]]
name = "{m.name}"
line = "sim"
tcp_port = {m.tcp_port}
unit_id = {m.unit_id}
profile = "{m.profile}"
interval = {interval}
"""
        for m in sim.devices
    )
