"""Bad input on the wire: each fault gives a quality flag and one log line per
change of state, never a crash, and never slows the other devices."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from typing import Any

import numpy as np
import pytest

from firmware_sim.water import FaultSpec, ModelSettings, WaterNetworkSim, WaterSimSettings
from gateway.batch import Quality
from gateway.drivers.modbus import ModbusSource
from gateway.metrics import render
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry

BAD_FRAME = Quality.COMM_ERROR | Quality.CRC_ERROR
TIMED_OUT = Quality.COMM_ERROR | Quality.TIMEOUT


async def run_with_fault(
    fault: FaultSpec, *, rtu: bool, seconds: float, collector: Any, run_source: Any
) -> tuple[ModbusSource, StreamRegistry, Any]:
    settings = WaterSimSettings(model=ModelSettings(dmas=1), faults=(fault,), tcp=not rtu, rtu=rtu)
    async with WaterNetworkSim(settings) as sim:
        modbus = modbus_settings(sim, interval=0.2, timeout=0.25, retries=1, rtu=rtu)
        registry = StreamRegistry()
        source = ModbusSource(modbus, registry)
        await run_source(source, seconds, collector)
    return source, registry, collector.merged().readings


CASES = [
    (FaultSpec("dma-01/inlet", "garbage"), BAD_FRAME, "bad_frame"),
    (FaultSpec("dma-01/inlet", "crc"), BAD_FRAME, "bad_frame"),  # tcp: a truncated reply
    (FaultSpec("dma-01/inlet", "wrong_unit"), BAD_FRAME, "bad_frame"),
    (FaultSpec("dma-01/inlet", "dead"), TIMED_OUT, "timeout"),
    # replies after the test window: a late reply on a later exchange is another case
    (FaultSpec("dma-01/inlet", "slow", delay_s=2.0), TIMED_OUT, "timeout"),
    (FaultSpec("dma-01/inlet", "exception", code=2), Quality.DEVICE_EXCEPTION, "exception"),
    (FaultSpec("dma-01/inlet", "exception", code=0x0B), Quality.DEVICE_EXCEPTION, "exception"),
]
MORE_CODES = [
    (FaultSpec("dma-01/inlet", "exception", code=c), Quality.DEVICE_EXCEPTION, "exception")
    for c in (1, 3, 4, 0x0A)
]
MATRIX = [(*case, False) for case in CASES + MORE_CODES] + [(*case, True) for case in CASES]


def case_id(fault: FaultSpec, rtu: bool) -> str:
    code = f"-{fault.code:#04x}" if fault.kind == "exception" else ""
    return f"{'rtu' if rtu else 'tcp'}-{fault.kind}{code}"


@pytest.mark.parametrize(
    ("fault", "quality", "state", "rtu"), MATRIX, ids=[case_id(m[0], m[3]) for m in MATRIX]
)
async def test_fault_gives_quality_and_one_log_line(  # noqa: PLR0917
    fault: FaultSpec,
    quality: int,
    state: str,
    rtu: bool,
    collector: Any,
    run_source: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.modbus"):
        source, registry, r = await run_with_fault(
            fault, rtu=rtu, seconds=1.5 if rtu else 0.9, collector=collector, run_source=run_source
        )
    flow = r.stream == registry.id_of("dma-01/inlet/flow_lps")
    assert flow.any()
    if rtu and fault.kind == "slow":
        # late replies land in later exchanges on the shared wire (as on a real
        # RS-485 line), so after the first timeout some polls see a bad frame
        assert r.quality[flow][0] == quality
        assert (r.quality[flow] & Quality.COMM_ERROR).all()
        return
    assert (r.quality[flow] == quality).all(), Quality.describe(int(r.quality[flow][0]))
    assert np.isnan(r.value[flow]).all()
    status = {s.name: s for s in source.status()}
    assert status["dma-01/inlet"].state == state
    if fault.kind == "exception":
        assert f"{fault.code:#04x}" in status["dma-01/inlet"].last_error
    downs = [rec for rec in caplog.records if rec.getMessage() == "device.down"]
    assert len(downs) == 1 and downs[0]._fields["state"] == state  # type: ignore[attr-defined]
    where = downs[0]._fields["address"]  # type: ignore[attr-defined]
    assert where.startswith("/dev/") if rtu else where.startswith("127.0.0.1:"), where
    zone = r.stream == registry.id_of("dma-01/pz-1/pressure_m")
    # the neighbour (on the same line for rtu) is untouched
    assert zone.sum() >= 3 and not r.quality[zone].any()
    assert status["dma-01/pz-1"].state == "up"
    text = render([source]).decode()
    assert re.search(r'gateway_modbus_device_up\{device="dma-01/inlet".*\} 0\.0', text), text
    assert re.search(r'gateway_modbus_device_up\{device="dma-01/pz-1".*\} 1\.0', text)
    positive = r"\} (0\.\d*[1-9]|[1-9])"
    assert re.search(r"gateway_modbus_line_busy_seconds_total\{.*" + positive, text)
    assert re.search(r'gateway_modbus_poll_seconds_total\{device="dma-01/pz-1".*' + positive, text)


async def test_device_recovers_and_logs_it(
    collector: Any, run_source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fault = FaultSpec("dma-01/inlet", "dead", start_s=0.0, end_s=0.8)
    with caplog.at_level(logging.INFO, logger="gateway.modbus"):
        _, registry, r = await run_with_fault(
            fault, rtu=False, seconds=2.5, collector=collector, run_source=run_source
        )
    events = [
        (rec.getMessage(), rec._fields["device"])  # type: ignore[attr-defined]
        for rec in caplog.records
        if rec.getMessage() in ("device.up", "device.down")
    ]
    inlet = [e for e, d in events if d == "dma-01/inlet"]
    assert inlet == ["device.down", "device.up"]
    flow = r.stream == registry.id_of("dma-01/inlet/flow_lps")
    # failures first, then good values; never a good value copied into a failed slot
    q = r.quality[flow]
    assert q[0] == TIMED_OUT and q[-1] == 0
    assert np.isnan(r.value[flow][q != 0]).all() and np.isfinite(r.value[flow][q == 0]).all()


async def test_serial_port_that_disappears(
    collector: Any, run_source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WaterSimSettings(model=ModelSettings(dmas=1), tcp=True, rtu=True)
    async with WaterNetworkSim(settings) as sim:
        rtu = modbus_settings(sim, interval=0.2, timeout=0.2, rtu=True)
        tcp = modbus_settings(sim, interval=0.2, timeout=0.2)
        # the same meters twice: over the pty and over tcp, under other names
        renamed = tuple(dataclasses.replace(d, name="tcp-" + d.name) for d in tcp.devices)
        both = dataclasses.replace(rtu, lines=rtu.lines + tcp.lines, devices=rtu.devices + renamed)
        registry = StreamRegistry()
        source = ModbusSource(both, registry)
        task = asyncio.create_task(source.run(collector))
        await asyncio.sleep(0.8)
        assert source.devices_up() == 4
        assert sim.wire is not None
        with caplog.at_level(logging.INFO, logger="gateway.modbus"):
            sim.wire.cut()  # the USB adapter is pulled
            cut_at = time.time_ns()
            await asyncio.sleep(1.5)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    r = collector.merged().readings
    flow = r.stream == registry.id_of("dma-01/inlet/flow_lps")
    settled = flow & (r.ts > cut_at + 100_000_000)  # what was in flight has finished
    assert settled.any() and (r.quality[settled] & Quality.COMM_ERROR).all()
    assert np.isnan(r.value[settled]).all()
    status = {s.name: s.state for s in source.status()}
    assert status["dma-01/inlet"] in ("link_down", "timeout", "bad_frame")
    assert status["tcp-dma-01/inlet"] == "up" and status["tcp-dma-01/pz-1"] == "up"
    downs = [rec for rec in caplog.records if rec.getMessage() == "device.down"]
    assert {rec._fields["device"] for rec in downs} == {"dma-01/inlet", "dma-01/pz-1"}  # type: ignore[attr-defined]


async def test_a_late_reply_is_dropped_not_taken_for_the_next_request(
    collector: Any, run_source: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The inlet answers 0.15 s after its timeout. RTU frames carry no transaction id,
    so without the guard that reply would be taken as the answer to the retry (or to
    the next request, whatever registers it asked for) and the meter would flap
    between up and down. With it, the meter is plainly too slow, and its neighbour
    on the line is untouched."""
    fault = FaultSpec("dma-01/inlet", "slow", delay_s=0.35)
    settings = WaterSimSettings(model=ModelSettings(dmas=1), faults=(fault,), tcp=False, rtu=True)
    async with WaterNetworkSim(settings) as sim:
        modbus = modbus_settings(sim, interval=0.2, timeout=0.2, retries=1, rtu=True)
        assert modbus.lines[0].late_reply_guard == 0.2  # the default
        # margins of 0.15 s either side of the reply, for a loaded machine
        lines = tuple(dataclasses.replace(x, late_reply_guard=0.35) for x in modbus.lines)
        modbus = dataclasses.replace(modbus, lines=lines, backoff_initial=0.2, backoff_max=0.4)
        registry = StreamRegistry()
        with caplog.at_level(logging.INFO, logger="gateway.modbus"):
            await run_source(ModbusSource(modbus, registry), 4.0, collector)
    r = collector.merged().readings
    inlet = r.stream == registry.id_of("dma-01/inlet/flow_lps")
    zone = r.stream == registry.id_of("dma-01/pz-1/pressure_m")
    assert inlet.sum() >= 2 and (r.quality[inlet] == TIMED_OUT).all()
    changes = [
        rec.getMessage()
        for rec in caplog.records
        if rec._fields.get("device") == "dma-01/inlet"  # type: ignore[attr-defined]
    ]
    assert changes == ["device.down"], changes
    assert zone.sum() >= 6 and not r.quality[zone].any()
