"""`gateway demo`: the whole path on one machine, with a live summary.

firmware_sim WaterNetworkSim --Modbus TCP and RTU on a pty--> ModbusSource --+
firmware_sim bus Fleet ------MQTT (local Mosquitto)---------> MqttSource ----+
                                                                             v
              stages: WaterDetectors, VehicleRules, AlertPrinter (prints alerts)
                                                                             v
                   durable Outbox --> PostgresSink (gateway_demo)
                                      or SqliteSink when PostgreSQL is unreachable
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import psycopg

from firmware_sim.buses.fleet import Fault, Fleet, FleetSettings
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from firmware_sim.buses.routes import PmpmlRoutes
from firmware_sim.water.model import LeakSpec, ModelSettings, WaterModel
from firmware_sim.water.server import WaterNetworkSim, WaterSimSettings
from gateway import simulated
from gateway.analytics import kernels, water
from gateway.analytics.aggregate import AggregateStage
from gateway.analytics.vehicle import VehicleRules
from gateway.analytics.vehicle_settings import VehicleRulesSettings
from gateway.analytics.water import WaterDetectors
from gateway.analytics.water_settings import DmaSettings
from gateway.batch import NS_PER_S, ReadingBatch
from gateway.bundle import Bundle
from gateway.db.migrate import MigrationError, ensure_database
from gateway.drivers.modbus.settings import ModbusSettings
from gateway.drivers.modbus.source import ModbusSource
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.events import AlertState
from gateway.mqtt.client import MqttSettings
from gateway.parts import Sink, Source, Stage
from gateway.pipeline.outbox import Outbox, OutboxSettings
from gateway.runtime import Runtime, RuntimeSettings, stop_on_signals
from gateway.sinks.postgres import PostgresSink
from gateway.sinks.sqlite import SqliteSink
from gateway.streams import StreamRegistry

DAY_S = 86_400
IST_S = 5.5 * 3600
HISTORY_DAYS = 14
# injected into the simulated fleet: kind:bus:at_s[:duration_s]
DEMO_FAULTS = ("panic:1:8", "gps_jump:2:12", "dtc:3:16:600", "overheat:0:5:600")
# into the water network, in sim time after its start
DEMO_WATER_FAULTS = (
    LeakSpec(dma=1, at_s=600, rate_lps=3.0),
    LeakSpec(dma=2, at_s=7200, rate_lps=10.0, kind="burst"),
)


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(Demo(args, sys.stdout).run())


class AlertPrinter:
    """The demo's last stage: one line per alert as it opens, and as it clears."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.opened: set[str] = set()

    def process(self, bundle: Bundle) -> Bundle:
        for a in bundle.alerts:
            if a.state is AlertState.UPDATED:
                continue
            if a.state is AlertState.OPENED:
                self.opened.add(a.id)
            elif a.id not in self.opened:
                continue  # opened while the detectors learned the history
            at = a.cleared_at if a.cleared_at is not None else a.opened_at
            local = time.strftime("%a %H:%M IST", time.gmtime(at / NS_PER_S + IST_S))
            detail = a.message or ", ".join(f"{k}={v}" for k, v in list(a.evidence.items())[:3])
            print(
                f"  ALERT {a.state.value:7s} {a.severity.name.lower():8s} {a.kind:16s} "
                f"{a.asset:24s} {local}  {detail}",
                file=self.out,
                flush=True,
            )
        return bundle


class FleetView:
    """The demo's view of the buses: each one's latest speed, for the summary line."""

    def __init__(self) -> None:
        self.speed_kmh: dict[int, float] = {}
        self.fixes = 0

    def process(self, bundle: Bundle) -> Bundle:
        f = bundle.fixes
        self.fixes += len(f)
        for vehicle, speed in zip(f.vehicle.tolist(), f.speed.tolist(), strict=True):
            self.speed_kmh[vehicle] = speed * 3.6
        return bundle

    def summary(self) -> str:
        speeds = [v for v in self.speed_kmh.values() if not math.isnan(v)]
        moving = sum(v > 2 for v in speeds)
        mean = sum(speeds) / len(speeds) if speeds else 0.0
        return f"buses {len(self.speed_kmh)} reporting, {moving} moving at {mean:4.1f} km/h"


def modbus_settings(sim: WaterNetworkSim, interval: float, rtu: bool) -> ModbusSettings:
    """Every meter over TCP, or odd DMAs over TCP and even ones over RTU on the pty."""
    tcp = simulated.modbus_settings(sim, interval=interval)
    if not rtu:
        return tcp
    serial = simulated.modbus_settings(sim, interval=interval, rtu=True)

    def on_rtu(name: str) -> bool:
        return int(name.split("/", maxsplit=1)[0].removeprefix("dma-")) % 2 == 0

    devices = tuple(d for d in tcp.devices if not on_rtu(d.name)) + tuple(
        d for d in serial.devices if on_rtu(d.name)
    )
    return ModbusSettings(
        profiles_dir=tcp.profiles_dir, lines=(*tcp.lines, *serial.lines), devices=devices
    )


def network_start(now_s: float) -> float:
    """23:00 IST a day or two back: the first night comes soon after the start, and
    a demo of a few minutes at 600x stays in the past."""
    local = now_s + IST_S - DAY_S
    return (local // DAY_S) * DAY_S + 23 * 3600 - DAY_S - IST_S


def dma_settings(dmas: int) -> list[DmaSettings]:
    return [
        DmaSettings(
            name=f"dma-{d:02d}",
            inflow=(f"dma-{d:02d}/inlet/flow_lps",),
            pressure=(f"dma-{d:02d}/inlet/pressure_m", f"dma-{d:02d}/pz-1/pressure_m"),
        )
        for d in range(1, dmas + 1)
    ]


def learn_history(detectors: WaterDetectors, live: WaterSimSettings) -> int:
    """Feed the detectors two weeks of the same network (same seed, so the same
    elevations and meters), without the injected faults, at one reading a minute,
    so they know its normal week before the live part starts. Returns the alerts opened."""
    end_s = live.model.start_epoch_s
    model = WaterModel(
        dataclasses.replace(
            live.model, start_epoch_s=end_s - HISTORY_DAYS * DAY_S, tick_s=60, leaks=()
        ),
        zone_points=live.zone_points,
    )
    registry = detectors.registry
    ids = [[registry.id_of(n) for n in d.streams()] for d in detectors.dmas]
    alerts = 0
    for _day in range(HISTORY_DAYS):
        ts, streams, values = [], [], []
        for _minute in range(DAY_S // 60):
            model.advance_to(model.t + 60)
            at = int(model.epoch_s() * NS_PER_S)
            for dma, state in zip(ids, model.dmas, strict=True):
                measured = (state.inflow_lps, state.inlet_head_m, state.zone_head_m[0])
                for stream, value in zip(dma, measured, strict=True):
                    ts.append(at)
                    streams.append(stream)
                    values.append(value)
        out = detectors.process(Bundle(readings=ReadingBatch.of(ts, streams, values)))
        alerts += sum(a.state is AlertState.OPENED for a in out.alerts)
    return alerts


class BusFleet:
    """The simulated fleet, publishing to the local broker once a second."""

    def __init__(self, buses: int, prefix: str) -> None:
        faults = tuple(Fault.parse(f) for f in DEMO_FAULTS if int(f.split(":")[1]) < buses)
        self.fleet = Fleet(
            FleetSettings(
                buses=buses, start_ms=int(time.time() * 1000), prefix=prefix, faults=faults
            ),
            PmpmlRoutes(),
        )
        self.publisher = BusPublisher(BrokerTarget(client_id=f"{prefix}-fleet"))

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.publisher.start)
        started = time.monotonic()
        try:
            while not stop.is_set():
                self.publisher.publish(self.fleet.advance(1.0))
                lag = started + self.fleet.t_s - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(lag, 0.0)):
                        await stop.wait()
        finally:
            await asyncio.to_thread(self.publisher.close)


class Demo:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.registry = StreamRegistry()
        # a gateway id per run: runs replay the same sim times, which must not collide
        self.gateway_id = time.strftime("demo-%Y%m%dT%H%M%S", time.gmtime())

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def open_sink(self) -> tuple[Sink, str]:
        dsn: str = self.args.dsn
        try:
            async with asyncio.timeout(15):
                report = await ensure_database(dsn)
        except (MigrationError, TimeoutError, OSError) as err:
            reason = str(err) or type(err).__name__
            self.say(f"PostgreSQL is not reachable ({reason.splitlines()[0]}).")
            self.say(f"Writing to the embedded SQLite store {self.args.sqlite} instead.")
            return SqliteSink(self.args.sqlite, self.registry), f"sqlite {self.args.sqlite}"
        db = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname", "")
        self.say(
            f"PostgreSQL: database {db} ready ({report.mode} mode); "
            f"this run writes as gateway {self.gateway_id}."
        )
        return PostgresSink(dsn, self.registry, self.gateway_id), f"postgres {db}"

    def bus_source(self, prefix: str) -> MqttSource:
        broker = MqttSettings(client_id=f"{prefix}-gateway", session_expiry_s=300)
        return MqttSource(MqttSourceSettings(broker=broker, prefix=prefix), self.registry)

    async def run(self) -> int:
        a = self.args
        stop = asyncio.Event()
        stop_on_signals(stop)
        kernels.warm_up()
        water.warm_up()
        VehicleRules.warm_up()
        start_s = network_start(time.time())
        leaks = tuple(x for x in (*a.leak, *a.burst) or DEMO_WATER_FAULTS if x.dma <= a.dmas)
        model = ModelSettings(dmas=a.dmas, start_epoch_s=start_s, leaks=leaks)
        sim_settings = WaterSimSettings(model=model, rtu=a.rtu, speed=a.speed)
        detectors = WaterDetectors(self.registry, dma_settings(a.dmas))
        prefix = f"demo{os.getpid()}"
        poll = a.poll_interval or 60.0 / a.speed
        # the history and the database come first: the network's clock starts with the
        # simulator, and a slow start would read as a dropout of every meter
        began = time.monotonic()
        history_alerts = learn_history(detectors, sim_settings)
        self.say(
            f"Leak detectors learned {HISTORY_DAYS} days of this network's history "
            f"in {time.monotonic() - began:.1f} s ({history_alerts} alerts opened in it)."
        )
        sink, where = await self.open_sink()
        async with WaterNetworkSim(sim_settings) as sim:
            meters = ModbusSource(
                modbus_settings(sim, poll, a.rtu),
                self.registry,
                clock=lambda: int((start_s + sim.sim_time()) * NS_PER_S),
            )
            sources: list[Source] = [meters]
            over = "TCP and RTU on a pty" if a.rtu else "TCP"
            self.say(
                f"Simulated water network: {a.dmas} DMAs, {meters.devices_total} meters over "
                f"Modbus {over}, at {a.speed:g}x real time (a reading a sim minute), "
                f"polled every {poll:g} s. Injected: "
                + (", ".join(f"{x.kind} {x.rate_lps:g} L/s in DMA {x.dma} at "
                             f"+{x.at_s / 60:g} min" for x in leaks) or "nothing")
            )  # fmt: skip
            stages: list[Stage] = [AggregateStage(self.registry), detectors]
            fleet = None
            if a.buses:
                fleet = BusFleet(a.buses, prefix)
                sources.append(self.bus_source(prefix))
                stages.append(VehicleRules(VehicleRulesSettings(), self.registry))
                self.say(
                    f"Simulated bus fleet: {a.buses} PMPML buses on MQTT {prefix}/v1/#, "
                    f"faults injected: {', '.join(DEMO_FAULTS)}."
                )
            view = FleetView()
            printer = AlertPrinter(self.out)
            stages += [view, printer]
            with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
                outbox = Outbox.open(
                    Path(tmp) / "outbox.sqlite", self.registry, OutboxSettings(directory=tmp)
                )
                runtime = Runtime(
                    sources,
                    [sink],
                    stages,
                    settings=RuntimeSettings(batch_max_seconds=0.5, drain_timeout=5.0),
                    queue_for=lambda _: outbox,
                )
                started = time.monotonic()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(runtime.run(stop))
                    tg.create_task(
                        self.summarise(
                            runtime,
                            meters=meters,
                            sim=sim,
                            fleet=view if fleet else None,
                            where=where,
                            stop=stop,
                        )
                    )
                    if fleet is not None:
                        tg.create_task(fleet.run(stop))
                    if a.duration > 0:
                        tg.create_task(stop_after(a.duration, stop))
                elapsed = time.monotonic() - started
                left = outbox.rows
        delivery = runtime.deliveries[0]
        stored = await self.count_stored(sink)
        self.say(
            f"Done after {elapsed:.0f} s: {runtime.rows_emitted} readings emitted "
            f"({runtime.rows_emitted / max(elapsed, 1e-9):.1f}/s); {stored} readings of this run "
            f"in {where}; {delivery.stats.rows_written} rows in all "
            f"(readings, fixes, events, alerts) confirmed; {len(printer.opened)} alerts opened; "
            f"{left} rows left in the outbox."
        )
        return 0

    async def summarise(
        self,
        runtime: Runtime,
        *,
        meters: ModbusSource,
        sim: WaterNetworkSim,
        fleet: FleetView | None,
        where: str,
        stop: asyncio.Event,
    ) -> None:
        every = 2.0
        started = last_t = time.monotonic()
        last_rows = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
            now = time.monotonic()
            rate = (runtime.rows_emitted - last_rows) / max(now - last_t, 1e-9)
            last_t, last_rows = now, runtime.rows_emitted
            d = runtime.deliveries[0]
            state = "up" if d.stats.up else "DOWN"
            buses = f"  {fleet.summary()}" if fleet else ""
            sim_clock = time.strftime("%a %H:%M", time.gmtime(sim.model.epoch_s() + IST_S))
            self.say(
                f"{now - started:5.0f}s  network {sim_clock} IST"
                f"  meters {meters.devices_up()}/{meters.devices_total} up"
                f"{buses}  readings/s {rate:6.1f}  stored {d.stats.rows_written:7d}"
                f" ({where}, {state})  outbox {d.queue.rows} rows"
            )

    async def count_stored(self, sink: Sink) -> int:
        """Readings of this run in the sink's table (earlier runs share the database)."""
        if isinstance(sink, SqliteSink):
            await sink.open()
            try:
                return sink.rows("readings")
            finally:
                await sink.close()
        async with await psycopg.AsyncConnection.connect(self.args.dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM readings r JOIN streams s ON s.id = r.stream "
                "WHERE s.gateway = %s",
                (self.gateway_id,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0


async def stop_after(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    stop.set()
