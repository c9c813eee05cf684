"""The stages run off the event loop: while one is stuck, Modbus polls go on."""

from __future__ import annotations

import asyncio
import threading

from firmware_sim.water import ModelSettings, WaterNetworkSim, WaterSimSettings
from gateway.bundle import Bundle
from gateway.drivers.modbus import ModbusSource
from gateway.runtime import Runtime, RuntimeSettings
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry
from tests.fakes import MemorySink


class StuckStage:
    """Blocks its worker thread until released, as a kernel stuck in a loop would."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def process(self, bundle: Bundle) -> Bundle:
        self.entered.set()
        self.release.wait(30)
        return bundle


async def test_modbus_polls_go_on_while_a_stage_is_stuck() -> None:
    stage = StuckStage()
    sink = MemorySink()
    registry = StreamRegistry()
    settings = WaterSimSettings(model=ModelSettings(dmas=1))
    async with WaterNetworkSim(settings) as sim:
        meters = ModbusSource(modbus_settings(sim, interval=0.05), registry)
        runtime = Runtime([meters], [sink], [stage], RuntimeSettings(batch_max_seconds=0.05))
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await asyncio.to_thread(stage.entered.wait, 30)
        polls = sum(p.polls for p in meters.polls)
        ticks = 0
        for _ in range(20):  # the loop itself stays free: a ticker runs on time
            await asyncio.sleep(0.02)
            ticks += 1
        assert sum(p.polls for p in meters.polls) >= polls + 4, "polls stopped with the stage"
        assert sink.rows == 0, "nothing passed the stuck stage"
        stage.release.set()
        for _ in range(200):
            if sink.rows:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 30)
    assert ticks == 20 and sink.rows > 0
