"""The AIS-140 unit simulator against the gateway's Ais140Source, over loopback TCP."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from firmware_sim.ais140.units import Fault, UnitsSettings, run_units, vehicles
from firmware_sim.buses.fleet import Fleet, FleetSettings
from firmware_sim.buses.routes import PmpmlRoutes
from gateway.bundle import Bundle
from gateway.drivers.ais140 import normalise_reg
from gateway.drivers.ais140.packets import Location
from gateway.drivers.ais140.parser import Ais140Parser
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.drivers.ais140.source import Ais140Source
from gateway.streams import StreamRegistry


async def test_every_shape_and_fault_reaches_the_source() -> None:
    units = UnitsSettings(port=0, devices=8, period_s=0.1, heartbeat_s=0.3)
    faults = (
        Fault("split", 0, 0.0, 60.0),
        Fault("batch", 1, 0.0, 60.0),
        Fault("noise", 2, 0.0, 0.5),
        Fault("panic", 3, 0.5, 0.2),
        Fault("history", 4, 0.0, 0.5),
        Fault("bad_checksum", 5, 0.0, 0.5),
        Fault("reconnect", 6, 0.5, 0.2),
    )
    settings = Ais140SourceSettings(
        host="127.0.0.1", port=0, vehicles=vehicles(units), flush_ms=20, max_packets_per_s=100
    )
    source = Ais140Source(settings, StreamRegistry())
    bundles: list[Bundle] = []

    async def emit(bundle: Bundle) -> None:
        bundles.append(bundle)

    task = asyncio.create_task(source.run(emit))
    await source.listening.wait()
    assert source.address is not None
    stop = asyncio.Event()
    units = UnitsSettings(
        port=source.address[1], devices=8, period_s=0.1, heartbeat_s=0.3, faults=faults
    )
    sim = asyncio.create_task(run_units(units, stop))
    async with asyncio.timeout(30):
        while source.stats.packets < 150 or not any(not b.live for b in bundles):
            await asyncio.sleep(0.05)
    stop.set()
    stats = await sim
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    s = source.stats
    assert set(s.profiles) >= {"roadrpa", "teltonika", "ctpl", "xyz123", "emergency"}
    assert s.rejects["noise"] >= 1 and "unknown_imei" not in s.rejects
    assert s.checksums["mismatch"] >= 1 and s.checksums["ok"] >= 50
    assert "panic" in [e.kind for b in bundles for e in b.events]
    assert stats.acks >= 1 and stats.connects >= 9  # unit 6 came back
    assert s.disconnects["closed"] >= 1


def test_print_config_lists_every_unit() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "sim", "ais140", "--devices", "3", "--print-config"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "[ais140.vehicles]" and len(out) == 4 and out[3].endswith('"MH12-PM-0003"')


def test_the_bus_simulators_packets_read_back_through_the_driver() -> None:
    """The simulator's own encoder against the gateway's parser: what a bus sends is what
    the gateway reads (a bug on either side shows here, not behind its twin)."""
    fleet = Fleet(FleetSettings(buses=2, pvt_format="ais140"), PmpmlRoutes())
    sent = [m for _ in range(30) for m in fleet.advance(1.0) if m.topic.endswith("/ais140")]
    parser = Ais140Parser()
    for message in sent:
        packet = parser.parse(message.payload)
        assert isinstance(packet, Location), packet
        assert packet.profile == "gwsim" and packet.checksum == "ok"
        assert normalise_reg(packet.vehicle_reg) == message.topic.split("/")[-2].replace("-", "")
    assert len(sent) >= 4
