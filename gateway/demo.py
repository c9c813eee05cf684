"""`gateway demo`: the whole path on one machine, with a live summary and a fault table.

firmware_sim WaterNetworkSim --Modbus TCP and RTU on a pty--> [sources.water] modbus --+
firmware_sim bus Fleet ------MQTT (local Mosquitto)---------> [sources.buses] mqtt ----+
                                                                                       v
        build(settings): aggregate, WaterDetectors, VehicleRules, then the demo's FleetView
        and AlertPrinter (prints alerts, fills the FaultTable)
                                                                                       v
                   durable Outbox --> [sinks.postgres] (gateway_demo)
                                      or [sinks.sqlite] when PostgreSQL is unreachable

The demo writes a `Settings` value and wires it with `gateway.build`, as `gateway run`
does a config file. Its water network runs on a simulated clock (`--speed`, 600x) and its
buses on the wall clock; the times it prints say which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, TypeVar

import psycopg

from firmware_sim.ais140.units import Fault as UnitFault
from firmware_sim.ais140.units import UnitsSettings, run_units
from firmware_sim.ais140.units import vehicle_of as ais140_vehicle_of
from firmware_sim.ais140.units import vehicles as ais140_vehicles
from firmware_sim.buses.fleet import Fault, Fleet, FleetSettings, vehicle_id
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from firmware_sim.buses.routes import PmpmlRoutes
from firmware_sim.water.model import LeakSpec, ModelSettings, WaterModel
from firmware_sim.water.server import WaterNetworkSim, WaterSimSettings
from gateway import simulated
from gateway.analytics.vehicle_settings import ModelThresholds, VehicleRulesSettings
from gateway.analytics.water import WaterDetectors
from gateway.analytics.water_settings import DmaSettings
from gateway.batch import NS_PER_S, ReadingBatch
from gateway.build import Gateway, build
from gateway.bundle import Bundle
from gateway.db.migrate import MigrationError, ensure_database
from gateway.db.settings import PostgresSettings
from gateway.demo_feed import BUS_FAULT_ALERTS, AlertPrinter, Clock, FaultTable, FleetView, Injected
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.drivers.modbus.settings import ModbusSettings
from gateway.drivers.modbus.source import ModbusSource
from gateway.drivers.mqtt.source import MqttSourceSettings
from gateway.events import AlertState
from gateway.mqtt.client import MqttSettings
from gateway.pipeline.outbox_file import OutboxSettings
from gateway.runtime import Runtime, stop_on_signals
from gateway.settings import (
    GatewaySettings,
    MetricsSettings,
    Part,
    PipelineSettings,
    Settings,
)
from gateway.sinks.sqlite import SqliteSettings, SqliteSink

DAY_S = 86_400
IST_S = 5.5 * 3600
HISTORY_DAYS = 14
# injected into the simulated fleet: kind:bus:at_s[:duration_s], seconds after it starts
DEMO_FAULTS = ("overheat:0:2:600", "panic:1:8", "gps_jump:2:12", "dtc:3:16:600")
# into the water network, in sim time after its start
DEMO_WATER_FAULTS = (
    LeakSpec(dma=1, at_s=600, rate_lps=3.0),
    LeakSpec(dma=2, at_s=7200, rate_lps=10.0, kind="burst"),
)
# The buses are in service (engines warm) when the gateway starts listening.
PREROLL_S = 300
# The buses run on the wall clock, so the one rule that waits long is shortened here, as
# the water network's clock is sped up: with the defaults (CAN every 30 s, above 105 C
# for 60 s) an overheat alert opens ~100 s after the fault, ~130 s from a cold engine.
DEMO_CAN_PERIOD_S = 2.0
DEMO_BUS_THRESHOLDS = ModelThresholds(coolant_max_c=100.0, coolant_clear_c=95.0, coolant_hold_s=5.0)


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(Demo(args, sys.stdout).run())


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


def tracker_faults(units: UnitsSettings, clock: Clock) -> list[Injected]:
    """The emergency button pressed on a tracking unit: the panic alert should follow.
    The units start after this, and stamp packets to the whole second, so the earliest
    stamp a press can carry is this moment plus its delay, floored to the second."""
    started = time.time_ns()
    return [
        Injected(
            f"{f.kind} on AIS-140 unit", f"bus/{ais140_vehicle_of(f.unit)}", ("panic",),
            (started + round(f.at_s * NS_PER_S)) // NS_PER_S * NS_PER_S, clock,
        )
        for f in units.faults
    ]  # fmt: skip


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
    """The simulated fleet, publishing to the local broker once a second. It has been in
    service for PREROLL_S before the first message (warm engines, buses along their
    routes); `faults` are timed from that first message."""

    def __init__(self, buses: int, prefix: str, faults: Sequence[Fault]) -> None:
        self.start_ms = int(time.time() * 1000) - PREROLL_S * 1000
        self.faults = tuple(faults)
        shifted = tuple(dataclasses.replace(f, at_s=f.at_s + PREROLL_S) for f in self.faults)
        self.fleet = Fleet(
            FleetSettings(
                buses=buses,
                start_ms=self.start_ms,
                prefix=prefix,
                faults=shifted,
                can_period_s=DEMO_CAN_PERIOD_S,
            ),
            PmpmlRoutes(),
        )
        for _ in range(PREROLL_S):
            self.fleet.advance(1.0)  # published before the gateway listened: not sent
        self.publisher = BusPublisher(BrokerTarget(client_id=f"{prefix}-fleet"))

    def injected(self, clock: Clock) -> list[Injected]:
        live_ns = (self.start_ms + PREROLL_S * 1000) * 1_000_000
        return [
            Injected(
                f.kind.replace("_", " "),
                f"bus/{vehicle_id(f.bus)}",
                BUS_FAULT_ALERTS[f.kind],
                live_ns + round(f.at_s * NS_PER_S),
                clock,
            )
            for f in self.faults
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self.publisher.start)
        started = time.monotonic() - self.fleet.t_s
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
        # a gateway id per run: runs replay the same sim times, which must not collide
        self.gateway_id = time.strftime("demo-%Y%m%dT%H%M%S", time.gmtime())

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def choose_sink(self) -> tuple[Part, str]:
        """PostgreSQL, its database created and migrated when missing; else SQLite."""
        dsn: str = self.args.dsn
        try:
            async with asyncio.timeout(15):
                report = await ensure_database(dsn)
        except (MigrationError, TimeoutError, OSError) as err:
            reason = str(err) or type(err).__name__
            self.say(f"PostgreSQL is not reachable ({reason.splitlines()[0]}).")
            self.say(f"Writing to the embedded SQLite store {self.args.sqlite} instead.")
            part = Part("sqlite", "sqlite", SqliteSettings(path=self.args.sqlite))
            return part, f"sqlite {self.args.sqlite}"
        db = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname", "")
        self.say(
            f"PostgreSQL: database {db} ready ({report.mode} mode); "
            f"this run writes as gateway {self.gateway_id}."
        )
        return Part("postgres", "postgres", PostgresSettings(dsn=dsn)), f"postgres {db}"

    def settings(  # noqa: PLR0917 - the demo's one place that puts its parts together
        self,
        sim: WaterNetworkSim,
        sink: Part,
        outbox: str,
        prefix: str,
        poll: float,
        units: UnitsSettings | None,
    ) -> Settings:
        """The demo's gateway, as a config file would give it to `gateway run`."""
        a = self.args
        sources = [Part("water", "modbus", modbus_settings(sim, poll, a.rtu))]
        if a.buses:
            broker = MqttSettings(client_id=f"{prefix}-gateway", session_expiry_s=300)
            sources.append(Part("buses", "mqtt", MqttSourceSettings(broker=broker, prefix=prefix)))
        if units is not None:
            trackers = Ais140SourceSettings(
                host="127.0.0.1", port=units.port, vehicles=ais140_vehicles(units)
            )
            sources.append(Part("trackers", "ais140", trackers))
        return Settings(
            gateway=GatewaySettings(id=self.gateway_id),
            pipeline=PipelineSettings(batch_max_seconds=0.5, drain_timeout=5.0),
            outbox=OutboxSettings(directory=outbox),
            metrics=MetricsSettings(enabled=False),
            sources=tuple(sources),
            sinks=(sink,),
            vehicle_rules=VehicleRulesSettings(models={"default": DEMO_BUS_THRESHOLDS}),
            dma=tuple(dma_settings(a.dmas)),
        )

    def trackers(self) -> UnitsSettings | None:
        """AIS-140 units numbered after the MQTT buses, so their vehicles differ."""
        if not self.args.ais140:
            return None
        with socket.socket() as s:  # a free port for the gateway to listen on
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        return UnitsSettings(
            port=port,
            devices=self.args.ais140,
            period_s=2.0,
            heartbeat_s=20.0,
            first=self.args.buses,
            faults=(UnitFault("panic", self.args.buses, 6.0, 10.0),),
        )

    async def run(self) -> int:
        a = self.args
        stop = asyncio.Event()
        stop_on_signals(stop)
        start_s = network_start(time.time())
        leaks = tuple(x for x in (*a.leak, *a.burst) or DEMO_WATER_FAULTS if x.dma <= a.dmas)
        model = ModelSettings(dmas=a.dmas, start_epoch_s=start_s, leaks=leaks)
        sim_settings = WaterSimSettings(model=model, rtu=a.rtu, speed=a.speed)
        prefix = f"demo{os.getpid()}"
        poll = a.poll_interval or 60.0 / a.speed
        sink, where = await self.choose_sink()
        bus_faults = [Fault.parse(f) for f in DEMO_FAULTS if int(f.split(":")[1]) < a.buses]
        async with WaterNetworkSim(sim_settings) as sim:
            with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
                units = self.trackers()
                settings = self.settings(sim, sink, tmp, prefix, poll, units)
                zone = settings.water.timezone
                network, wall = Clock.simulated(a.speed, zone), Clock.wall(zone)
                faults = FaultTable(
                    Injected(
                        f"{x.kind} {x.rate_lps:g} L/s", f"dma-{x.dma:02d}", (x.kind,),
                        round((start_s + x.at_s) * NS_PER_S), network,
                    )
                    for x in leaks
                )  # fmt: skip
                view = FleetView()
                printer = AlertPrinter(
                    self.out, faults, network=network, wall=wall,
                    dmas={d.name for d in settings.dma},
                )  # fmt: skip
                record = Path(a.record) if a.record else None
                gateway = build(
                    settings, file="gateway demo", extra_stages=[view, printer], record=record
                )
                meters = _part(gateway, ModbusSource)
                # the history first: the network's clock (re)starts after it, since a slow
                # start would read as a dropout of every meter
                began = time.monotonic()
                history_alerts = learn_history(_part(gateway, WaterDetectors), sim_settings)
                self.say(
                    f"Leak detectors learned {HISTORY_DAYS} days of this network's history "
                    f"in {time.monotonic() - began:.1f} s ({history_alerts} alerts opened in it)."
                )
                self.describe_network(meters, leaks, poll, network)
                fleet = None
                if a.buses:
                    fleet = BusFleet(a.buses, prefix, bus_faults)
                    faults.add(fleet.injected(wall))
                    self.describe_fleet(prefix)
                if units is not None:
                    faults.add(tracker_faults(units, wall))
                    injected = ", ".join(f"{f.kind}:{f.unit}:{f.at_s:g}" for f in units.faults)
                    self.say(
                        f"Simulated AIS-140 units: {units.devices} tracking units of "
                        f"{len(units.shapes)} vendors' shapes connecting over TCP to "
                        f"127.0.0.1:{units.port}, one packet every {units.period_s:g} s; "
                        f"faults injected: {injected}."
                    )
                sim.restart_clock()
                meters.clock = lambda: int((start_s + sim.sim_time()) * NS_PER_S)
                runtime = gateway.runtime
                assert runtime is not None  # built to run, not to check
                started = time.monotonic()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(runtime.run(stop))
                    tg.create_task(
                        self.summarise(
                            runtime,
                            meters=meters,
                            sim=sim,
                            network=network,
                            fleet=view if fleet else None,
                            where=where,
                            stop=stop,
                        )
                    )
                    if fleet is not None:
                        tg.create_task(fleet.run(stop))
                    if units is not None:
                        tg.create_task(run_units(units, stop))
                    if a.duration > 0:
                        tg.create_task(stop_after(a.duration, stop))
                elapsed = time.monotonic() - started
                delivery = runtime.deliveries[0]
                left = delivery.queue.rows
        stored = await self.count_stored(gateway)
        self.say(
            f"Done after {elapsed:.0f} s: {runtime.rows_emitted} readings emitted "
            f"({runtime.rows_emitted / max(elapsed, 1e-9):.1f}/s); {stored} readings of this run "
            f"in {where}; {delivery.stats.rows_written} rows in all "
            f"(readings, fixes, events, alerts) confirmed; {len(printer.opened)} alerts opened; "
            f"{left} rows left in the outbox."
        )
        self.say(f"\nInjected faults and the alerts that caught them (times in {zone}):")
        self.say(faults.render())
        missed = faults.missed()
        if missed:
            self.say(f"{len(missed)} of {len(faults.faults)} injected faults missed.")
        self.say_alerts_command(sink)
        return 0

    def describe_network(
        self, meters: ModbusSource, leaks: Sequence[LeakSpec], poll: float, network: Clock
    ) -> None:
        a = self.args
        over = "TCP and RTU on a pty" if a.rtu else "TCP"
        self.say(
            f"Simulated water network: {a.dmas} DMAs, {meters.devices_total} meters over "
            f"Modbus {over}, on a simulated clock at {a.speed:g}x real time ('{network.label}': "
            f"a reading a sim minute), polled every {poll:g} s. Injected: "
            + (", ".join(f"{x.kind} {x.rate_lps:g} L/s in DMA {x.dma} at "
                         f"+{x.at_s / 60:g} min" for x in leaks) or "nothing")
        )  # fmt: skip

    def describe_fleet(self, prefix: str) -> None:
        m = DEMO_BUS_THRESHOLDS
        d = ModelThresholds()
        self.say(
            f"Simulated bus fleet: {self.args.buses} PMPML buses on MQTT {prefix}/v1/#, on the "
            f"wall clock ('wall'), CAN every {DEMO_CAN_PERIOD_S:g} s; faults injected: "
            f"{', '.join(DEMO_FAULTS)}. Overheating is shortened for the demo: above "
            f"{m.coolant_max_c:g} C for {m.coolant_hold_s:g} s (default {d.coolant_max_c:g} C "
            f"for {d.coolant_hold_s:g} s)."
        )

    def say_alerts_command(self, sink: Part) -> None:
        if isinstance(sink.settings, PostgresSettings):
            self.say(
                "List this run's alerts: gateway alerts --all --dsn "
                + shlex.quote(sink.settings.dsn)
            )
        else:
            self.say(
                "This run's alerts are in the SQLite store: sqlite3 "
                f"{shlex.quote(self.args.sqlite)} 'SELECT kind, asset, state FROM alerts'"
            )

    async def summarise(
        self,
        runtime: Runtime,
        *,
        meters: ModbusSource,
        sim: WaterNetworkSim,
        network: Clock,
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
            at_s = sim.model.epoch_s()
            self.say(
                f"{now - started:5.0f}s  network {network.show(round(at_s * NS_PER_S))}"
                f"  meters {meters.devices_up()}/{meters.devices_total} up"
                f"{buses}  readings/s {rate:6.1f}  stored {d.stats.rows_written:7d}"
                f" ({where}, {state})  outbox {d.queue.rows} rows"
            )

    async def count_stored(self, gateway: Gateway) -> int:
        """Readings of this run in the sink's table (earlier runs share the database)."""
        sink = gateway.sinks[0]
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


T = TypeVar("T")


def _part(gateway: Gateway, kind: type[T]) -> T:
    """The one source or stage of `kind` that build made."""
    found = [p for p in (*gateway.sources, *gateway.stages) if isinstance(p, kind)]
    if len(found) != 1:
        raise RuntimeError(f"the demo's settings should give one {kind.__name__}, got {found}")
    return found[0]


async def stop_after(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    stop.set()
