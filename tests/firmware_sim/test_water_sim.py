"""The served simulator: sim time, the 100 Hz logger's sample block read without
gaps, stuck meters, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import numpy as np
import pytest

from firmware_sim.water import FaultSpec, ModelSettings, WaterNetworkSim, WaterSimSettings
from firmware_sim.water.cli import parse_duration, parse_fault, parse_leak, register
from gateway.bundle import Bundle
from gateway.drivers.modbus import ModbusSource
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry


class Collector:
    def __init__(self) -> None:
        self.bundles: list[Bundle] = []

    async def __call__(self, bundle: Bundle) -> None:
        self.bundles.append(bundle)


async def poll_for(sim: WaterNetworkSim, seconds: float, **kw: Any) -> tuple[Any, Any, Any]:
    registry = StreamRegistry()
    source = ModbusSource(modbus_settings(sim, **kw), registry)
    got = Collector()
    task = asyncio.create_task(source.run(got))
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return source, registry, Bundle.merge(got.bundles).readings


async def test_sim_time_runs_at_the_given_speed() -> None:
    async with WaterNetworkSim(WaterSimSettings(speed=600.0)) as sim:
        await asyncio.sleep(0.2)
        assert sim.sim_time() == pytest.approx(120.0, rel=0.2)
        assert [m.name for m in sim.devices] == ["dma-01/inlet", "dma-01/pz-1"]
        assert all(m.tcp_port > 0 for m in sim.devices)


async def test_the_100hz_logger_is_read_without_gaps() -> None:
    settings = WaterSimSettings(model=ModelSettings(seed=8), hf_logger=True)
    async with WaterNetworkSim(settings) as sim:
        source, registry, r = await poll_for(sim, 2.5, interval=1.0)
        seq = int(sim.sim_time() * 100)
    status = {s.name: s for s in source.status()}["dma-01/hf-1"]
    assert status.sample_gaps == 0
    hf = r.stream == registry.id_of("dma-01/hf-1/pressure_hf_m")
    ts = r.ts[hf]
    # every sample once: about 100 per second, evenly spaced within each read
    assert status.samples == hf.sum() and abs(hf.sum() - seq) <= 60
    assert hf.sum() >= 200
    steps = np.diff(ts)
    assert (np.median(steps) == 10_000_000) and (steps > 0).all()
    zone = r.value[r.stream == registry.id_of("dma-01/pz-1/pressure_m")]
    assert abs(np.mean(r.value[hf]) - np.mean(zone)) < 0.5  # same water, same pressure


async def test_a_slow_reader_counts_the_gap() -> None:
    settings = WaterSimSettings(model=ModelSettings(seed=8), hf_logger=True, speed=4.0)
    async with WaterNetworkSim(settings) as sim:
        source, _, _ = await poll_for(sim, 1.5, interval=1.0)
    hf = {s.name: s for s in source.status()}["dma-01/hf-1"]
    # the settings poll the block every 0.5/speed s, so at 4x there is no gap either
    assert hf.sample_gaps == 0 and hf.samples > 400


async def test_a_stuck_meter_repeats_its_registers() -> None:
    settings = WaterSimSettings(
        model=ModelSettings(seed=9), speed=300.0, faults=(FaultSpec("dma-01/inlet", "stuck", 60.0),)
    )
    async with WaterNetworkSim(settings) as sim:
        _, registry, r = await poll_for(sim, 1.2, interval=0.1)
    flow = r.value[r.stream == registry.id_of("dma-01/inlet/flow_lps")]
    zone = r.value[r.stream == registry.id_of("dma-01/pz-1/pressure_m")]
    assert len(set(flow[-4:])) == 1  # frozen after sim minute 1
    assert len(set(zone[-4:])) > 1  # the neighbour still moves


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="gateway sim")
    register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["water", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "gateway sim water --leak" in out and "mbpoll" in out
    args = parser.parse_args(
        ["water", "--dmas", "2", "--leak", "1:2h:3.5:6h", "--burst", "2:30m:25",
         "--fault", "dead:dma-01/pz-1:10m:20m", "--rtu", "--baud", "19200"]
    )  # fmt: skip
    assert args.leak[0].at_s == 7200 and args.leak[0].ramp_s == 6 * 3600
    assert args.burst[0].kind == "burst" and args.burst[0].rate_lps == 25
    assert args.fault[0].start_s == 600 and args.fault[0].end_s == 1200


def test_cli_parsers_refuse_nonsense() -> None:
    assert parse_duration("90") == 90 and parse_duration("1.5d") == 1.5 * 86400
    for bad in ("soon", "3w"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="DMA:AT:RATE"):
        parse_leak("1:2h")
    with pytest.raises(argparse.ArgumentTypeError, match="KIND:DEVICE"):
        parse_fault("melt:dma-01/inlet")


def test_cli_runs_and_stops(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="gateway sim")
    register(parser.add_subparsers())
    args = parser.parse_args(["water", "--port-base", "0", "--duration", "0.3", "--rtu"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "dma-01/inlet" in out and "RTU on /dev/pts/" in out
    bad = parser.parse_args(["water", "--fault", "dead:dma-09/inlet"])
    assert bad.func(bad) == 2
