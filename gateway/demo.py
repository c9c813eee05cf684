"""`gateway demo`: the whole path on one machine, with a live summary.

firmware_sim WaterNetworkSim --Modbus TCP (127.0.0.1)--> ModbusSource --> Runtime
                                                                           |
                                    PostgresSink (gateway_demo) <----------+
                                    or SqliteSink when PostgreSQL is unreachable
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import TextIO

import psycopg

from firmware_sim.water.model import ModelSettings
from firmware_sim.water.server import WaterNetworkSim, WaterSimSettings
from gateway.db.migrate import MigrationError, ensure_database
from gateway.drivers.modbus.source import ModbusSource
from gateway.runtime import Runtime, RuntimeSettings, stop_on_signals
from gateway.sinks.base import Sink
from gateway.sinks.postgres import PostgresSink
from gateway.sinks.sqlite import SqliteSink
from gateway.streams import StreamRegistry

DEMO_GATEWAY_ID = "demo-gateway"


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(Demo(args, sys.stdout).run())


class Demo:
    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.registry = StreamRegistry()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def open_sink(self) -> tuple[Sink, str]:
        dsn: str = self.args.dsn
        try:
            report = await asyncio.wait_for(ensure_database(dsn), timeout=15)
        except (MigrationError, TimeoutError, OSError) as err:
            reason = str(err) or type(err).__name__
            self.say(f"PostgreSQL is not reachable ({reason.splitlines()[0]}).")
            self.say(f"Writing to the embedded SQLite store {self.args.sqlite} instead.")
            return SqliteSink(self.args.sqlite, self.registry), f"sqlite {self.args.sqlite}"
        db = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname", "")
        self.say(f"PostgreSQL: database {db} ready ({report.mode} mode).")
        return PostgresSink(dsn, self.registry, DEMO_GATEWAY_ID), f"postgres {db}"

    async def run(self) -> int:
        stop = asyncio.Event()
        stop_on_signals(stop)
        sim_settings = WaterSimSettings(model=ModelSettings(dmas=self.args.dmas))
        async with WaterNetworkSim(sim_settings) as sim:
            modbus = sim.modbus_settings(interval=self.args.poll_interval)
            source = ModbusSource(modbus, self.registry)
            self.say(
                f"Simulated water network: {self.args.dmas} DMAs, {source.devices_total} meters "
                f"on Modbus TCP 127.0.0.1, {len(self.registry)} streams, "
                f"polled every {self.args.poll_interval:g} s."
            )
            sink, where = await self.open_sink()
            runtime = Runtime([source], [sink], settings=RuntimeSettings(batch_max_seconds=0.5))
            started = time.monotonic()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(runtime.run(stop))
                tg.create_task(self.summarise(runtime, source, where, stop))
                if self.args.duration > 0:
                    tg.create_task(stop_after(self.args.duration, stop))
            elapsed = time.monotonic() - started
        delivery = runtime.deliveries[0]
        stored = await self.count_stored(sink)
        self.say(
            f"Done after {elapsed:.0f} s: {runtime.rows_emitted} readings from "
            f"{source.devices_total} meters ({runtime.rows_emitted / max(elapsed, 1e-9):.1f}/s), "
            f"{delivery.stats.rows_written} confirmed by {where}, "
            f"{stored} rows in its readings table."
        )
        return 0

    async def summarise(
        self, runtime: Runtime, source: ModbusSource, where: str, stop: asyncio.Event
    ) -> None:
        every = 2.0
        started = last_t = time.monotonic()
        last_rows = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            now = time.monotonic()
            rate = (runtime.rows_emitted - last_rows) / max(now - last_t, 1e-9)
            last_t, last_rows = now, runtime.rows_emitted
            d = runtime.deliveries[0]
            state = "up" if d.stats.up else "DOWN"
            self.say(
                f"{now - started:5.0f}s  devices {source.devices_up()}/{source.devices_total} up"
                f"  readings/s {rate:6.1f}  stored {d.stats.rows_written:7d} ({where}, {state})"
                f"  waiting {d.queue.rows}"
            )

    async def count_stored(self, sink: Sink) -> int:
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
                (DEMO_GATEWAY_ID,),
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0


async def stop_after(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()
