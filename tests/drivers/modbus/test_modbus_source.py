from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import numpy as np
import pytest

from firmware_sim.water import FaultSpec, ModelSettings, WaterNetworkSim, WaterSimSettings
from gateway.batch import Quality
from gateway.drivers.modbus import DeviceSettings, ModbusSettings, ModbusSource
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry


async def test_polls_simulated_dma_over_tcp(
    sim: WaterNetworkSim, collector: Any, run_source: Any
) -> None:
    registry = StreamRegistry()
    source = ModbusSource(modbus_settings(sim, interval=0.2), registry)
    # streams are known before the first poll, with unit and kind
    flow = registry.info(registry.id_of("dma-01/inlet/flow_lps"))
    assert (flow.unit, flow.kind, flow.asset) == ("L/s", "flow", "dma-01/inlet")
    assert registry.info(registry.id_of("dma-01/pz-1/pressure_m")).unit == "m"
    assert source.devices_total == 2 and source.devices_up() == 0

    got = collector
    await run_source(source, 1.2, got)
    r = got.merged().readings
    assert source.devices_up() == 2
    assert len(r) > 0 and not r.quality.any()
    # the nameplate is read once when the meter comes up, not on every poll
    inlet = source.status()[0]
    assert inlet.info == {"serial_number": "SIM00001"}
    assert [r.fc for r in source.polls[0].requests] == [4]

    def values(name: str) -> np.ndarray:
        return r.value[r.stream == registry.id_of(name)]

    inflow = values("dma-01/inlet/flow_lps")
    inlet_p = values("dma-01/inlet/pressure_m")
    zone_p = values("dma-01/pz-1/pressure_m")
    assert len(inflow) >= 4 and len(zone_p) >= 4
    assert np.all((inflow > 1) & (inflow < 200))
    assert np.all((inlet_p > 20) & (inlet_p < 60))
    # pressure falls along the DMA: the interior point is below the inlet
    assert zone_p.mean() < inlet_p.mean()
    # the sim's values arrive as it computed them
    sim.model.advance_to(sim.sim_time())
    assert inflow[-1] == pytest.approx(sim.model.dma(0).inflow_lps, rel=0.1)


async def test_unreachable_meters_get_bad_quality_and_others_keep_their_rate(  # noqa: PLR0917
    sim: WaterNetworkSim,
    silent_peer: int,
    refused_port: int,
    collector: Any,
    run_source: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = modbus_settings(sim, interval=0.2, timeout=0.15, retries=0)
    extra = (
        DeviceSettings("dma-09/inlet", "sim-tcp", "emf-flow-meter", tcp_port=refused_port,
                       interval=0.2),
        DeviceSettings("dma-09/pz-1", "sim-tcp", "pressure-logger", tcp_port=silent_peer,
                       interval=0.2),
    )  # fmt: skip
    settings = dataclasses.replace(base, devices=base.devices + extra, backoff_initial=0.4)
    assert isinstance(settings, ModbusSettings)
    registry = StreamRegistry()
    source = ModbusSource(settings, registry)
    got = collector
    with caplog.at_level(logging.INFO, logger="gateway.modbus"):
        await run_source(source, 2.0, got)

    assert source.devices_total == 4 and source.devices_up() == 2
    r = got.merged().readings
    refused = r.stream == registry.id_of("dma-09/inlet/flow_lps")
    silent = r.stream == registry.id_of("dma-09/pz-1/pressure_m")
    assert refused.any() and silent.any()
    # failed polls are NaN with the reason, never a copy of a value
    assert np.isnan(r.value[refused]).all() and np.isnan(r.value[silent]).all()
    assert (r.quality[refused] & Quality.COMM_ERROR).all()
    assert (r.quality[silent] == Quality.COMM_ERROR | Quality.TIMEOUT).all()
    # ... logged once per change of state, not once per poll
    downs = [rec for rec in caplog.records if rec.getMessage() == "device.down"]
    assert sorted(rec._fields["device"] for rec in downs) == ["dma-09/inlet", "dma-09/pz-1"]  # type: ignore[attr-defined]
    # ... and the live meters keep their 5 Hz rate (2 s -> about 10 polls)
    for status in source.status():
        if status.name.startswith("dma-01"):
            assert status.state == "up" and status.polls >= 8, status
        else:
            assert status.failed_polls == status.polls >= 2, status
    good = r.stream == registry.id_of("dma-01/inlet/flow_lps")
    assert not r.quality[good].any() and np.isfinite(r.value[good]).all()


async def test_alarm_bits_arrive_as_events(collector: Any, run_source: Any) -> None:
    settings = WaterSimSettings(
        model=ModelSettings(dmas=1, amr_per_dma=1),
        speed=10.0,
        faults=(
            FaultSpec("dma-01/amr-001", "tamper", start_s=2.0, end_s=8.0),
            FaultSpec("dma-01/pz-1", "low_battery", start_s=0.0),
        ),
    )
    async with WaterNetworkSim(settings) as sim:
        source = ModbusSource(modbus_settings(sim, interval=0.1), StreamRegistry())
        await run_source(source, 1.3, collector)
    events = [(e.asset, e.kind) for e in collector.merged().events]
    assert events.count(("dma-01/amr-001", "tamper")) == 1
    assert events.count(("dma-01/amr-001", "tamper_cleared")) == 1
    assert events.index(("dma-01/amr-001", "tamper")) < events.index(
        ("dma-01/amr-001", "tamper_cleared")
    )
    assert events.count(("dma-01/pz-1", "low_battery")) == 1


async def test_a_cancel_swallowed_inside_pymodbus_still_stops_the_lanes(
    sim: WaterNetworkSim, collector: Any
) -> None:
    """pymodbus waits for a reply with asyncio.wait_for, which on Python 3.11 drops a
    cancel that arrives together with the reply; polled flat out, that happened in CI
    and a stop hung. Every read here drops the cancel the same way."""
    source = ModbusSource(modbus_settings(sim, interval=0.001), StreamRegistry())
    task = asyncio.create_task(source.run(collector))
    await asyncio.sleep(0.3)
    for lane in source.lanes:
        real = lane.link.read

        async def swallowing(
            fc: int, address: int, count: int, *rest: Any, real: Any = real
        ) -> Any:
            try:
                return await real(fc, address, count, *rest)
            except asyncio.CancelledError:
                return [0] * count

        lane.link.read = swallowing  # type: ignore[method-assign]
    await asyncio.sleep(0.1)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done and task.cancelled()
