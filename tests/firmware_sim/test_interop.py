"""The gateway's profiles (config/profiles) read the simulated meters' own register maps.

The simulator encodes with its maps and pymodbus; the gateway decodes with its
profiles and its decoder. Agreement here is what catches a wrong address, word
order, scale or bit in either, which a simulator sharing the gateway's code hid.
"""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest

from firmware_sim.water import FaultSpec, ModelSettings, WaterNetworkSim, WaterSimSettings
from firmware_sim.water.devices import SimMeter
from gateway.bundle import Bundle
from gateway.drivers.modbus import ModbusSource
from gateway.drivers.modbus.profiles import Point, Profile, default_profiles_dir, load_profiles
from gateway.drivers.modbus.registers import decode, decode_string
from gateway.simulated import modbus_settings
from gateway.streams import StreamRegistry

PROFILES = load_profiles(default_profiles_dir())
ALARMED = ("dma-01/amr-001", "dma-01/pz-1", "dma-01/inlet")


def sim_with_every_model() -> WaterNetworkSim:
    faults = tuple(
        FaultSpec(device, kind)
        for device in ALARMED
        for kind in ("tamper", "empty_pipe", "meter_leak")
    )
    settings = WaterSimSettings(
        model=ModelSettings(seed=5, amr_per_dma=2), hf_logger=True, faults=faults
    )
    return WaterNetworkSim(settings)


def regs(meter: SimMeter, p: Point) -> list[int]:
    return meter.tables[p.fc][p.address : p.end]


def expected(meter: SimMeter, sim: WaterNetworkSim, p: Point) -> float:
    value = meter.values(sim.model)[p.name]
    return math.fmod(value, p.rollover) if p.rollover > 0 else value


def test_every_model_has_a_profile_with_the_same_values() -> None:
    sim = sim_with_every_model()
    models = {m.profile for m in sim.devices}
    assert models == set(PROFILES) == set(sim.maps)
    for meter in sim.devices:
        profile = PROFILES[meter.profile]
        fields = {f.name for f in meter.regmap.fields}
        assert fields == {p.name for p in profile.points}, meter.profile


@pytest.mark.parametrize("t", [0.0, 3_600.0, 9 * 86_400.0 + 7 * 3_600])
def test_the_gateway_decodes_what_each_meter_encodes(t: float) -> None:
    sim = sim_with_every_model()
    sim.model.advance_to(t)
    checked = 0
    for meter in sim.devices:
        meter.refresh(sim.model, now=t)
        profile: Profile = PROFILES[meter.profile]
        for p in profile.points:
            if p.type == "string":
                assert decode_string(p, regs(meter, p)) == f"SIM{meter.unit_id:05d}"
                continue
            if p.fc in (1, 2):
                got = float(meter.tables[p.fc][p.address])
            else:
                got = decode(p, regs(meter, p))
            # a valve powers on open (the gateway may write it); every other point is modelled
            want = 1.0 if p.name == "valve_open" else expected(meter, sim, p)
            tolerance = 1e-6 * abs(want) if p.type.startswith("float") else p.scale / 2 + 1e-9
            assert got == pytest.approx(want, abs=tolerance), (meter.name, p.name)
            checked += 1
    assert checked == 31  # inlet 6, zone 6, two AMR meters 9 each, the 100 Hz logger 1


def test_alarm_bits_land_where_the_profiles_look() -> None:
    sim = sim_with_every_model()
    sim.model.advance_to(60.0)
    for meter in sim.devices:
        meter.refresh(sim.model)
        for p in PROFILES[meter.profile].points:
            if p.kind == "alarm" and p.type == "bit":
                on = p.name in ("tamper", "empty_pipe", "meter_leak") and meter.name in ALARMED
                assert decode(p, regs(meter, p)) == float(on), (meter.name, p.name)


def test_the_100hz_buffer_decodes_as_the_profile_says() -> None:
    sim = sim_with_every_model()
    sim.model.advance_to(30.0)
    logger = sim.device("dma-01/hf-1")
    logger.refresh(sim.model, now=30.0)
    block = PROFILES[logger.profile].sample_block
    assert block is not None
    table = logger.tables[block.fc]
    seq = Point("seq", block.fc, block.seq_address, type="uint32")
    assert decode(seq, table[block.seq_address : block.seq_address + 2]) == 3_000
    sample = Point("s", block.fc, 0, type=block.type, scale=block.scale, offset=block.offset)
    values = [
        decode(sample, [w]) for w in table[block.data_address : block.data_address + block.size]
    ]
    assert abs(sum(values) / len(values) - sim.model.zone_head(0, 0)) < 0.5


async def test_the_source_reads_the_simulator_over_tcp() -> None:
    """End to end: the gateway's ModbusSource, its profiles, the sim's servers."""
    sim = WaterNetworkSim(WaterSimSettings(model=ModelSettings(seed=6)))  # 1 s model ticks
    registry = StreamRegistry()
    got: list[Bundle] = []

    async def emit(bundle: Bundle) -> None:
        got.append(bundle)

    async with sim:
        source = ModbusSource(modbus_settings(sim, interval=0.1), registry)
        task = asyncio.create_task(source.run(emit))
        async with asyncio.timeout(20):
            while len(got) < 6:
                await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sim.model.advance_to(sim.sim_time())
        state = sim.model.dma(0)
    r = Bundle.merge(got).readings
    flow = r.value[r.stream == registry.id_of("dma-01/inlet/flow_lps")]
    volume = r.value[r.stream == registry.id_of("dma-01/inlet/volume_m3")]
    assert len(flow) >= 3 and 0 < flow[-1] < 200
    # the last read is at most a tick or two behind the model: a second or two of flow
    assert volume[-1] == pytest.approx(state.volume_l / 1000.0, abs=flow.max() * 2 / 1000 + 1e-3)
