"""Readings carry the source's clock: the time of receipt, or a simulator's own time."""

import asyncio

from firmware_sim.water.server import WaterNetworkSim
from gateway.bundle import Bundle
from gateway.drivers.modbus.source import ModbusSource
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry


async def test_readings_are_stamped_by_the_injected_clock() -> None:
    got: list[Bundle] = []

    async def emit(bundle: Bundle) -> None:
        got.append(bundle)

    async with WaterNetworkSim() as sim:
        ticks = iter(range(10**6))
        source = ModbusSource(
            modbus_settings(sim, interval=0.05),
            StreamRegistry(),
            clock=lambda: 1_000_000_000 * (1_700_000_000 + next(ticks)),
        )
        task = asyncio.create_task(source.run(emit))
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    ts = Bundle.merge(got).readings.ts
    assert len(ts) > 0
    seconds = set((ts // 1_000_000_000 - 1_700_000_000).tolist())
    assert seconds <= set(range(10**6)) and len(seconds) > 1, "one clock reading per poll"
