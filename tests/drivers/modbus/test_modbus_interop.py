"""Interop with parts we did not write: mbpoll (Debian's package) reads our
simulated meters over TCP and over the pty, and our driver reads a plain
pymodbus ModbusTcpServer whose registers pymodbus itself encoded."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

from firmware_sim.water import ModelSettings, WaterNetworkSim, WaterSimSettings
from gateway.drivers.modbus import DeviceSettings, LineSettings, ModbusSettings, ModbusSource
from gateway.drivers.modbus.profiles import load_profile
from gateway.streams import StreamRegistry

MBPOLL = shutil.which("mbpoll")


async def mbpoll(*args: str) -> list[float]:
    if MBPOLL is None:
        pytest.fail("mbpoll is not installed: apt-get install -y mbpoll (./run test installs it)")
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    text = out.decode()
    assert proc.returncode == 0, text
    return [float(v) for v in re.findall(r"^\[\d+\]:\s+(-?[0-9.e+]+)", text, re.M)]


@pytest.fixture
async def both_sim() -> Any:
    settings = WaterSimSettings(model=ModelSettings(dmas=1, seed=5), tcp=True, rtu=True)
    async with WaterNetworkSim(settings) as sim:
        yield sim


def expected(sim: WaterNetworkSim) -> tuple[float, float, float]:
    sim.model.advance_to(sim.sim_time())
    state = sim.model.dma(0)
    return state.inflow_lps, state.volume_l, state.zone_head_m[0]


async def check_with_mbpoll(sim: WaterNetworkSim, target: list[str]) -> None:
    flow, litres, zone_head = expected(sim)
    # inlet meter (unit 1): float32 flow, big-endian words, input register 1 (1-based)
    got = await mbpoll(*target, "-a", "1", "-t", "3:float", "-B", "-r", "1", "-c", "1")
    assert got[0] == pytest.approx(flow, rel=0.05)
    # its totaliser: uint32 litres, low word first (CDAB), mbpoll's default word order
    got = await mbpoll(*target, "-a", "1", "-t", "3:int", "-r", "3", "-c", "1")
    assert got[0] == pytest.approx(litres, abs=200)
    # pressure logger (unit 2): int16 cm of head in holding register 1
    got = await mbpoll(*target, "-a", "2", "-t", "4", "-r", "1", "-c", "1")
    assert got[0] / 100 == pytest.approx(zone_head, abs=0.5)


async def test_mbpoll_reads_the_simulated_meters_over_tcp(both_sim: WaterNetworkSim) -> None:
    # over TCP each meter listens on its own port, as meters with their own IP would
    inlet, logger = both_sim.devices[0], both_sim.devices[1]
    flow, litres, zone_head = expected(both_sim)
    tcp = ["-m", "tcp", "-o", "2", "-1", "127.0.0.1"]
    got = await mbpoll("-p", str(inlet.tcp_port), "-a", "1", "-t", "3:float", "-B",
                       "-r", "1", "-c", "1", *tcp)  # fmt: skip
    assert got[0] == pytest.approx(flow, rel=0.05)
    got = await mbpoll("-p", str(inlet.tcp_port), "-a", "1", "-t", "3:int", "-r", "3", *tcp)
    assert got[0] == pytest.approx(litres, abs=200)
    got = await mbpoll("-p", str(logger.tcp_port), "-a", "2", "-t", "4", "-r", "1", *tcp)
    assert got[0] / 100 == pytest.approx(zone_head, abs=0.5)


async def test_mbpoll_reads_the_simulated_meters_over_the_pty(both_sim: WaterNetworkSim) -> None:
    assert both_sim.rtu_port is not None and Path(both_sim.rtu_port).exists()
    await check_with_mbpoll(
        both_sim, ["-m", "rtu", "-b", "115200", "-P", "none", "-o", "2", "-1", both_sim.rtu_port]
    )


async def test_driver_reads_a_plain_pymodbus_server(
    tmp_path: Path, collector: Any, run_source: Any
) -> None:
    """A datastore we did not shape: pymodbus encodes the values, we decode them."""
    encode = AsyncModbusTcpClient.convert_to_registers
    dt = AsyncModbusTcpClient.DATATYPE
    hr = (
        encode(12.5, dt.FLOAT32)  # 0-1 flow, big-endian words (ABCD)
        + encode(123456789, dt.UINT32, word_order="little")  # 2-3 litres, CDAB
        + encode(-7, dt.INT16)  # 4 temperature
        + encode(-1.25, dt.FLOAT64)  # 5-8
        + encode("PMC-0042", dt.STRING)  # 9-12
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    # the legacy datastore numbers registers from 1, so the block starts at 1 for address 0
    device = ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, hr + [0] * 8))
    server = ModbusTcpServer(ModbusServerContext(devices={7: device}), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    profile_file = tmp_path / "plain.toml"
    profile_file.write_text(
        '[profile]\nname = "plain"\n'
        '[[points]]\nname = "flow_lps"\nfc = 3\naddress = 0\ntype = "float32"\nunit = "L/s"\n'
        '[[points]]\nname = "volume_m3"\nfc = 3\naddress = 2\ntype = "uint32"\norder = "CDAB"\n'
        'scale = 0.001\nunit = "m3"\n'
        '[[points]]\nname = "temp_c"\nfc = 3\naddress = 4\ntype = "int16"\n'
        '[[points]]\nname = "setpoint"\nfc = 3\naddress = 5\ntype = "float64"\n'
        '[[points]]\nname = "tag"\nfc = 3\naddress = 9\ntype = "string"\nlength = 4\nemit = false\n'
    )
    profile = load_profile(profile_file)
    settings = ModbusSettings(
        lines=(LineSettings("lan", host="127.0.0.1", tcp_port=port),),
        devices=(DeviceSettings("plant/meter", "lan", "plain", unit_id=7, interval=0.2),),
    )
    registry = StreamRegistry()
    source = ModbusSource(settings, registry, profiles={"plain": profile})
    try:
        await run_source(source, 0.6, collector)
    finally:
        await server.shutdown()
    r = collector.merged().readings
    assert len(r) and not r.quality.any()

    def last(name: str) -> float:
        return float(r.value[r.stream == registry.id_of(f"plant/meter/{name}")][-1])

    assert last("flow_lps") == 12.5
    assert last("volume_m3") == pytest.approx(123456.789)
    assert last("temp_c") == -7
    assert last("setpoint") == -1.25
    assert np.isfinite(r.value).all()
