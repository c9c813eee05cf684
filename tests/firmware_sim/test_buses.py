"""The bus simulator: deterministic, real routes, faults visible to the gateway's decoder."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter

import numpy as np
import pytest

from firmware_sim.buses import register
from firmware_sim.buses.avl import AvlReplay, load_avl
from firmware_sim.buses.fleet import Fault, Fleet, FleetSettings, Message
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from firmware_sim.buses.routes import CairnsRoutes, PmpmlRoutes
from gateway.bundle import Bundle
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.mqtt.client import MqttSettings
from gateway.streams import StreamRegistry

START_MS = (int(time.time()) - 3600) * 1000  # an hour ago: every message is in the past


@pytest.fixture(scope="module")
def pmpml() -> PmpmlRoutes:
    return PmpmlRoutes()


def run(fleet: Fleet, seconds: int) -> list[Message]:
    out: list[Message] = []
    for _ in range(seconds):
        out.extend(fleet.advance(1.0))
    return out


def decode(messages: list[Message], prefix: str = "pmpml") -> tuple[MqttSource, list[Bundle]]:
    source = MqttSource(MqttSourceSettings(prefix=prefix), StreamRegistry())
    for m in messages:
        source.handle(m.topic, m.payload)
    return source, source.take()


def test_same_seed_same_bytes(pmpml: PmpmlRoutes) -> None:
    settings = FleetSettings(buses=5, seed=42, start_ms=START_MS, pvt_format="both")
    a = run(Fleet(settings, pmpml), 120)
    b = run(Fleet(settings, pmpml), 120)
    assert a == b and len(a) > 100
    c = run(Fleet(FleetSettings(buses=5, seed=43, start_ms=START_MS), pmpml), 120)
    assert [m.payload for m in a[:20]] != [m.payload for m in c[:20]]


def test_routes_use_real_stops_and_shapes(pmpml: PmpmlRoutes) -> None:
    route = pmpml.route(4)  # YATRA 25 Swargate to Narayanpur
    assert route.stops[0] == "Swargate" and route.stops[-1] == "Narayanpur"
    assert 10_000 < route.length_m < 80_000
    assert np.all(np.diff(route.cum_m) >= 0)
    cairns = CairnsRoutes()
    assert len(cairns) > 10 and cairns.route(0).length_m > 1_000


def test_publishing_rates_and_everything_decodes(pmpml: PmpmlRoutes) -> None:
    settings = FleetSettings(
        buses=10, seed=3, start_ms=START_MS, pvt_format="both", can_format="frames"
    )
    messages = run(Fleet(settings, pmpml), 300)
    kinds = Counter(m.topic.rsplit("/", 1)[1] for m in messages)
    # pvt every 5-10 s, CAN every 30 s, health every 60 s, for 10 buses over 300 s
    assert 10 * 300 / 10 <= kinds["pvt"] <= 10 * 300 / 5 + 10
    assert kinds["ais140"] == kinds["pvt"]
    assert kinds["can"] == pytest.approx(100, abs=10) and kinds["health"] == pytest.approx(50, 10)
    source, bundles = decode(messages)
    assert not source.stats.rejects, source.stats.rejects
    fixes = sum(len(b.fixes) for b in bundles)
    assert fixes == kinds["pvt"] * 2
    names = {
        str(n).rsplit("/", 1)[1]
        for n in source.registry.names_of(np.arange(len(source.registry), dtype=np.int32))
    }
    assert {
        "rpm",
        "coolant_c",
        "oil_kpa",
        "fuel_lph",
        "battery_v",
        "speed_kmh",
        "fuel_pct",
    } <= names


def values(source: MqttSource, bundles: list[Bundle], name: str) -> np.ndarray:
    sid = source.registry.id_of(name)
    readings = Bundle.merge(bundles).readings
    return readings.value[readings.stream == sid]


def test_injected_faults_show_in_the_decoded_data(pmpml: PmpmlRoutes) -> None:
    faults = (
        Fault("overheat", 0, 0, 3600),
        Fault("oil_drop", 1, 100, 600),
        Fault("battery_sag", 2, 100, 600),
        Fault("panic", 3, 200, 60),
        Fault("dtc", 4, 200, 120),
        Fault("silence", 5, 100, 300),
        Fault("gps_jump", 6, 300, 10),
        Fault("detour", 7, 100, 600),
    )
    settings = FleetSettings(buses=8, seed=5, start_ms=START_MS, faults=faults, can_format="frames")
    fleet = Fleet(settings, pmpml)
    source, bundles = decode(run(fleet, 700))
    assert not source.stats.rejects
    bus = [f"bus/MH12-PM-{i + 1:04d}" for i in range(8)]
    assert values(source, bundles, f"{bus[0]}/coolant_c").max() > 105
    assert values(source, bundles, f"{bus[1]}/oil_kpa").min() < 100
    assert values(source, bundles, f"{bus[2]}/battery_v").min() < 22
    events = [e for b in bundles for e in b.events]
    kinds = [(e.asset, e.kind) for e in events]
    assert kinds.count((bus[3], "panic")) == 1 and kinds.count((bus[3], "panic_cleared")) == 1
    dtcs = [e for e in events if e.asset == bus[4] and e.kind == "dtc"]
    assert [len(e.data["faults"]) for e in dtcs] == [2, 0]  # raised over TP.BAM, then cleared
    assert {f["lamp"] for f in dtcs[0].data["faults"]} == {"red"}
    fixes = Bundle.merge(bundles).fixes
    silent = source.registry.vehicles.id_of("MH12-PM-0006")
    t = (fixes.ts[fixes.vehicle == silent] // 1_000_000 - START_MS) / 1000
    assert not np.any((t > 101) & (t < 400)) and np.any(t > 400)
    jumper = fixes[fixes.vehicle == source.registry.vehicles.id_of("MH12-PM-0007")]
    step = np.hypot(np.diff(jumper.lat) * 111_000, np.diff(jumper.lon) * 105_000)
    assert step.max() > 3_000  # one fix ~5 km off
    assert np.sort(step)[-3] < 1_000  # and only that one (out and back)


def test_avl_replay_is_stamped_in_the_past_and_ordered() -> None:
    fixes = load_avl(limit=2_000)
    start = int(time.time() * 1000)
    replay = AvlReplay(fixes, start, speed=1_000.0)
    messages = replay.due(replay.end_real_ms)
    assert replay.done and len(messages) == 2_000
    stamps = [json.loads(m.payload)["ts"] for m in messages]
    assert stamps == sorted(stamps) and stamps[-1] == replay.end_real_ms
    source, bundles = decode(messages)
    assert not source.stats.rejects
    assert sum(len(b.fixes) for b in bundles) == 2_000


def test_cli_help_has_examples() -> None:
    parser = argparse.ArgumentParser(prog="gateway sim")
    register(parser.add_subparsers())
    text = parser._subparsers._group_actions[0].choices["buses"].format_help()  # type: ignore[union-attr]
    assert "examples:" in text and "--fault overheat:0:60:300" in text and "--replay-avl" in text


def test_cli_dry_run_prints_messages(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["buses", "--buses", "2", "--duration", "20", "--speed", "0", "--dry-run", "--seed", "9"]
    )
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("pmpml/v1/MH12-PM-000") for line in lines)
    bad = parser.parse_args(["buses", "--fault", "meltdown:0:1", "--dry-run"])
    assert bad.func(bad) == 2


def test_fleet_over_the_real_broker_reaches_the_gateway(mqtt_prefix: str) -> None:
    settings = FleetSettings(
        buses=20, seed=11, start_ms=START_MS, prefix=mqtt_prefix, pvt_format="both",
        faults=(Fault("panic", 0, 10, 30), Fault("overheat", 1, 0, 600)),
    )  # fmt: skip
    messages = run(Fleet(settings, PmpmlRoutes()), 120)

    async def scenario() -> list[Bundle]:
        registry = StreamRegistry()
        mqtt = MqttSettings(client_id=f"gw-{mqtt_prefix}", clean_start=True, session_expiry_s=0)
        source = MqttSource(MqttSourceSettings(broker=mqtt, prefix=mqtt_prefix), registry)
        got: list[Bundle] = []

        async def emit(bundle: Bundle) -> None:
            got.append(bundle)

        task = asyncio.create_task(source.run(emit))
        while source.client is None or not source.client.connected.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        publisher = BusPublisher(BrokerTarget(client_id=f"sim-{mqtt_prefix}"))
        publisher.start()
        publisher.publish(messages)
        assert publisher.flush(10)
        publisher.close()
        deadline = time.monotonic() + 10
        while source.stats.messages < len(messages) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.4)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert source.stats.messages == len(messages) and not source.stats.rejects
        return got

    bundles = asyncio.run(scenario())
    merged = Bundle.merge(bundles)
    assert len(np.unique(merged.fixes.vehicle)) == 20
    panic = [e for e in merged.events if e.asset == "bus/MH12-PM-0001"]
    assert [e.kind for e in panic if e.data["via"] == "json"] == ["panic", "panic_cleared"]
    assert {e.kind for e in panic if e.data["via"] == "ais140"} == {"panic"}  # EA packets
