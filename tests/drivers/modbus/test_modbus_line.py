"""One RS-485 line (RTU on a pty pair): a dead meter among ten, writes queued
behind polls, and the line utilisation figure."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np

from firmware_sim.water import FaultSpec, ModelSettings, WaterNetworkSim, WaterSimSettings
from gateway.drivers.modbus import ModbusSource
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry


async def test_one_dead_meter_among_ten_keeps_the_others_rate(
    collector: Any, run_source: Any
) -> None:
    dead = "dma-03/pz-1"
    settings = WaterSimSettings(
        model=ModelSettings(dmas=5),
        tcp=False,
        rtu=True,
        faults=(FaultSpec(dead, "dead"),),
    )
    async with WaterNetworkSim(settings) as sim:
        assert len(sim.devices) == 10
        modbus = modbus_settings(sim, interval=0.25, rtu=True, timeout=0.15, retries=1)
        modbus = dataclasses.replace(modbus, backoff_initial=1.0, backoff_max=4.0)
        source = ModbusSource(modbus, StreamRegistry())
        await run_source(source, 4.0, collector)
    status = {s.name: s for s in source.status()}
    assert status[dead].state == "timeout" and status[dead].failed_polls == status[dead].polls
    # the dead meter was tried a few times (backing off), not every 0.25 s
    assert 2 <= status[dead].polls <= 5, status[dead]
    expected = 4.0 / 0.25
    for name, s in status.items():
        if name != dead:
            assert s.state == "up" and s.failed_polls == 0, s
            assert s.polls >= 0.8 * expected, f"{name}: {s.polls} polls, expected ~{expected}"


async def test_writes_queue_behind_polls_on_the_line(collector: Any) -> None:
    settings = WaterSimSettings(model=ModelSettings(dmas=1, amr_per_dma=1), tcp=False, rtu=True)
    async with WaterNetworkSim(settings) as sim:
        registry = StreamRegistry()
        source = ModbusSource(modbus_settings(sim, interval=0.05, rtu=True), registry)
        task = asyncio.create_task(source.run(collector))
        await asyncio.sleep(0.3)
        amr = sim.device("dma-01/amr-001")
        zone = sim.device("dma-01/pz-1")
        # many writes at once while every device polls flat out: none may interleave
        writes = [source.write("dma-01/pz-1", 6, 6, [i]) for i in range(10)]
        writes.append(source.write("dma-01/pz-1", 16, 7, [111, 222]))
        writes.append(source.write("dma-01/amr-001", 5, 0, [0]))  # close the valve
        await asyncio.gather(*writes)
        assert zone.tables[3][6] == 9 and zone.tables[3][7:9] == [111, 222]  # in order
        assert amr.tables[1][0] == 0
        await asyncio.sleep(0.3)  # polls see it closed
        await source.write("dma-01/amr-001", 15, 0, [1])  # open it again, fc 15
        assert amr.tables[1][0] == 1
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert all(s.failed_polls == 0 for s in source.status()), source.status()
    r = collector.merged().readings
    valve = r.value[r.stream == registry.id_of("dma-01/amr-001/valve_open")]
    assert 0.0 in valve and valve[-1] == 1.0  # the polls saw the valve close and reopen


async def test_line_utilisation_is_the_share_of_time_on_frames(collector: Any) -> None:
    baud = 9600
    settings = WaterSimSettings(model=ModelSettings(dmas=1), tcp=False, rtu=True, baudrate=baud)
    async with WaterNetworkSim(settings) as sim:
        source = ModbusSource(modbus_settings(sim, interval=1.0, rtu=True), StreamRegistry())
        task = asyncio.create_task(source.run(collector))
        await asyncio.sleep(0.2)
        source.utilisation()
        await asyncio.sleep(2.0)
        light = source.utilisation()["sim-rtu"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        fast = ModbusSource(modbus_settings(sim, interval=0.01, rtu=True), StreamRegistry())
        task = asyncio.create_task(fast.run(collector))
        await asyncio.sleep(0.5)
        fast.utilisation()
        await asyncio.sleep(2.0)
        busy = fast.utilisation()["sim-rtu"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # 2 devices a second: the inlet's fc3 (8 regs) + fc4 (12 regs) and the logger's fc3 (6):
    # (8+21) + (8+29) + (8+17) chars + 3 gaps of 7 chars, 10 bits each -> ~0.12 s a second
    assert 0.05 < light < 0.25, light
    # polled flat out, the line is mostly busy with frames (the rest is turnaround)
    assert 0.6 < busy <= 1.0, busy
    assert np.isfinite(light) and np.isfinite(busy)


async def test_rtu_over_tcp_through_a_converter(collector: Any, run_source: Any) -> None:
    """One TCP connection carrying RTU frames for every meter, as a serial-to-Ethernet
    converter does: one request at a time, CRCs checked."""
    settings = WaterSimSettings(
        model=ModelSettings(dmas=2),
        tcp=False,
        rtu_over_tcp=True,
        faults=(FaultSpec("dma-02/pz-1", "crc"),),
    )
    async with WaterNetworkSim(settings) as sim:
        registry = StreamRegistry()
        modbus = modbus_settings(sim, interval=0.2, over_tcp=True, timeout=0.3)
        assert modbus.lines[0].kind == "rtu_over_tcp"
        source = ModbusSource(modbus, registry)
        await run_source(source, 2.0, collector)
    assert len(source.lanes) == 1  # one lane: the converter's line
    status = {s.name: s.state for s in source.status()}
    assert status == {
        "dma-01/inlet": "up",
        "dma-01/pz-1": "up",
        "dma-02/inlet": "up",
        "dma-02/pz-1": "bad_frame",
    }
    r = collector.merged().readings
    flow = r.stream == registry.id_of("dma-02/inlet/flow_lps")
    assert flow.sum() >= 3 and not r.quality[flow].any()
