"""The bus simulator: deterministic, real routes, faults visible to the gateway's decoder."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from firmware_sim.buses import register, run_buses
from firmware_sim.buses.avl import DEFAULT_AVL, AvlReplay, load_avl
from firmware_sim.buses.fleet import Fault, Fleet, FleetSettings, Message
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from firmware_sim.buses.routes import CairnsRoutes, PmpmlRoutes
from firmware_sim.water import cli as water_cli
from gateway.bundle import Bundle
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.mqtt.client import MqttSettings
from gateway.streams import StreamRegistry

START_MS = (int(time.time()) - 3600) * 1000  # an hour ago: every message is in the past
AVL_SLICE = Path(__file__).parents[1] / "data" / "avl" / "capmetro_2016-12-16.csv"


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
    assert len(pmpml) == 120
    for route in pmpml.routes:  # "Swargate to Narayanpur (DOWN)": from one real stop to the other
        assert f"{route.stops[0]} to {route.stops[-1]}".lower() in route.name.lower()
        assert np.all(np.diff(route.cum_m) >= 0) and len(route.stops) >= 2
    lengths = [r.length_m for r in pmpml.routes]
    assert 5_000 < float(np.median(lengths)) < 40_000
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


RESOLUTION = {  # of each signal on J1939 (SAE J1939-71)
    "rpm": 0.125, "coolant_c": 1.0, "oil_kpa": 4.0, "fuel_lph": 0.05,
    "battery_v": 0.05, "speed_kmh": 1 / 256, "fuel_pct": 0.4,
}  # fmt: skip


def test_j1939_frames_decode_to_the_signals_the_unit_sent(pmpml: PmpmlRoutes) -> None:
    """The sim's own DBC and DM1 encoder against the gateway's decoder: the same fleet,
    once as JSON signals and once as raw frames, reads the same."""
    faults = (Fault("dtc", 0, 30, 200), Fault("overheat", 1, 0, 600))
    decoded = {}
    for fmt in ("signals", "frames"):
        settings = FleetSettings(buses=3, seed=8, start_ms=START_MS, can_format=fmt, faults=faults)
        decoded[fmt] = decode(run(Fleet(settings, pmpml), 400))
    (json_source, json_bundles), (can_source, can_bundles) = decoded.values()
    assert not json_source.stats.rejects and not can_source.stats.rejects
    for bus in ("MH12-PM-0001", "MH12-PM-0002", "MH12-PM-0003"):
        for quantity, step in RESOLUTION.items():
            name = f"bus/{bus}/{quantity}"
            sent = values(json_source, json_bundles, name)
            got = values(can_source, can_bundles, name)
            assert len(sent) == len(got) > 10, name
            assert np.all(np.abs(got - sent) <= step / 2 + 1e-9), (name, sent, got)

    def dtcs(bundles: list[Bundle]) -> list[object]:
        return [e.data["faults"] for b in bundles for e in b.events if e.kind == "dtc"]

    assert dtcs(can_bundles) == dtcs(json_bundles)
    assert [[(f["spn"], f["fmi"]) for f in faults] for faults in dtcs(can_bundles)] == [
        [(110, 0), (100, 1)],
        [],
    ]


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
    fixes = load_avl(limit=1_000)  # the shipped sample: five CapMetro buses
    start = int(time.time() * 1000)
    replay = AvlReplay(fixes, start, speed=1_000.0)
    messages = replay.due(replay.end_real_ms)
    assert replay.done and len(messages) == 1_000
    stamps = [json.loads(m.payload)["ts"] for m in messages]
    assert stamps == sorted(stamps) and stamps[-1] == replay.end_real_ms
    source, bundles = decode(messages)
    assert not source.stats.rejects
    assert sum(len(b.fixes) for b in bundles) == 1_000


def rows(path: Path) -> int:
    with path.open() as fh:
        return sum(1 for _ in fh) - 1


def test_cli_replays_avl_onto_the_broker(mqtt_prefix: str) -> None:
    """`gateway sim buses --replay-avl CSV` puts every fix of the file on the wire."""
    received: list[paho.MQTTMessage] = []
    listener = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"l-{mqtt_prefix}")
    subscribed = threading.Event()
    listener.on_message = lambda _c, _u, msg: received.append(msg)
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.connect("127.0.0.1", 1883)
    listener.subscribe(f"{mqtt_prefix}/v1/+/pvt", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(10)  # the broker has the subscription before the replay starts
        args = cli("--replay-avl", str(AVL_SLICE), "--speed", "100000", "--prefix", mqtt_prefix)
        assert args.func(args) == 0
        deadline = time.monotonic() + 10
        while len(received) < rows(AVL_SLICE) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert len(received) == rows(AVL_SLICE)
    bodies = [json.loads(m.payload) for m in received]
    assert {b["vehicle"] for b in bodies} == {f"CM-{v}" for v in avl_vehicles(AVL_SLICE)}
    assert all(
        m.topic == f"{mqtt_prefix}/v1/{b['vehicle']}/pvt"
        for m, b in zip(received, bodies, strict=True)
    )


def avl_vehicles(path: Path) -> set[str]:
    with path.open(newline="") as fh:
        return {row["vehicle_id"] for row in csv.DictReader(fh)}


def test_cli_replays_the_shipped_avl_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    args = cli("--replay-avl", "--speed", "100000", "--dry-run")
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == rows(DEFAULT_AVL) and all("/pvt {" in line for line in lines)
    missing = cli("--replay-avl", "/nonexistent/avl.csv", "--dry-run")
    assert missing.func(missing) == 2
    assert "/nonexistent/avl.csv is missing" in capsys.readouterr().err


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def test_duration_is_real_seconds_as_for_the_water_sim(capsys: pytest.CaptureFixture[str]) -> None:
    clock, now_s = FakeClock(), 1_800_000_000.0
    args = cli("--buses", "1", "--duration", "30", "--speed", "10", "--dry-run")
    assert run_buses(args, clock=clock, sleep=clock.sleep, wall=lambda: now_s) == 0
    assert clock.t == pytest.approx(30.0, abs=0.2)  # 30 real seconds went by
    stamps = [
        json.loads(line.split(" ", 1)[1])["ts"] for line in capsys.readouterr().out.splitlines()
    ]
    # ...covering 300 sim seconds, none stamped after the real time the run ends
    end_ms = now_s * 1000 + 30_000
    assert 280_000 < stamps[-1] - stamps[0] <= 300_000 and end_ms - 10_000 < stamps[-1] <= end_ms
    water = argparse.ArgumentParser()
    water_cli.register(water.add_subparsers())
    help_of = {
        "buses": cli_help(),
        "water": water._subparsers._group_actions[0].choices["water"].format_help(),  # type: ignore[union-attr]
    }
    for text in help_of.values():
        assert "real seconds to run; 0: until Ctrl-C (default: 0.0)" in " ".join(text.split())
    assert "(default: 10)" in help_of["buses"] and "(default: 5020)" in help_of["water"]
    for empty in ("None", "False", "[]", ")"):  # a default of nothing goes unsaid
        assert all(f"(default: {empty}" not in text for text in help_of.values())


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["buses", *argv])


def cli_help() -> str:
    parser = argparse.ArgumentParser(prog="gateway sim")
    register(parser.add_subparsers())
    return parser._subparsers._group_actions[0].choices["buses"].format_help()  # type: ignore[union-attr]


def test_cli_help_has_examples() -> None:
    text = cli_help()
    assert "examples:" in text and "--fault overheat:0:60:300" in text and "--replay-avl" in text


def test_cli_dry_run_prints_messages(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["buses", "--buses", "2", "--duration", "0.2", "--speed", "100", "--dry-run", "--seed", "9"]
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
