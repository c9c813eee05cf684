"""An outbox backlog drained into PostgresSink, on plain PostgreSQL and on TimescaleDB:
every reading and minute lands once, and the rollups over them are whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psycopg

from gateway.batch import NS_PER_S, AggregateBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.parts import Emit
from gateway.pipeline.outbox import Outbox
from gateway.runtime import Runtime, RuntimeSettings
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry
from tests.db.jobs import migrate_held, refresh_rollups

MINUTE = 60 * NS_PER_S
DAY = 86_400 * NS_PER_S
T0 = (time.time_ns() // DAY - 2) * DAY  # 2 days ago 00:00 UTC: whole buckets, kept


class Backlog:
    """Bundles of a minute each: 60 readings and that minute's aggregate, for 2 streams."""

    name = "backlog"

    def __init__(self, minutes: int) -> None:
        self.minutes = minutes
        self.emitted = asyncio.Event()

    async def run(self, emit: Emit) -> None:
        for k in range(self.minutes):
            start = T0 + k * MINUTE
            ts = np.repeat(start + np.arange(60) * NS_PER_S, 2)
            stream = np.tile(np.array([0, 1], np.int32), 60)
            aggregates = AggregateBatch(
                np.array([start, start], np.int64), np.array([0, 1], np.int32),
                np.array([60, 60], np.int32), np.array([1.0, 2.0]), np.array([1.0, 2.0]),
                np.array([1.0, 2.0]), np.array([60.0, 120.0]), np.array([1.0, 2.0]),
            )  # fmt: skip
            await emit(Bundle(readings=ReadingBatch.of(ts, stream, np.ones(120)),
                              aggregates=aggregates))  # fmt: skip
        self.emitted.set()
        await asyncio.Event().wait()


def registry() -> StreamRegistry:
    reg = StreamRegistry()
    reg.register("dma-01/inlet/flow_lps", "L/s", "flow")
    reg.register("dma-01/pz-1/pressure_m", "m", "pressure")
    return reg


async def run_until(
    sink: PostgresSink, outbox: Outbox, source: Backlog | None, done: Callable[[], bool]
) -> None:
    """Run the runtime until done() holds (checked every 50 ms, 60 s at most), then stop."""
    settings = RuntimeSettings(batch_max_rows=500, batch_max_seconds=0.05, drain_timeout=0.5)
    runtime = Runtime([source] if source else [], [sink], settings=settings,
                      queue_for=lambda _: outbox)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    async with asyncio.timeout(60):
        while not done():
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_a_backlog_drains_once_and_the_rollups_are_whole(db_dsn: str, tmp_path: Path) -> None:
    await migrate_held(db_dsn)
    path = tmp_path / "outbox-postgres.sqlite"
    reg = registry()
    down = PostgresSink("postgresql://postgres@127.0.0.1:9/x", reg, "gw", connect_timeout=1)
    outbox = Outbox.open(path, reg)
    backlog = Backlog(120)  # two hours, the central database away
    await run_until(down, outbox, backlog, backlog.emitted.is_set)
    outbox.close_file()
    assert Outbox.open(path, registry()).rows == 120 * (120 + 2)
    reg = registry()
    up = PostgresSink(db_dsn, reg, "gw")
    outbox = Outbox.open(path, reg)
    await run_until(up, outbox, None, lambda: outbox.rows == 0)
    outbox.close_file()
    refresh_rollups(db_dsn)  # TimescaleDB's policies; plain mode: the sink did it
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT (stream, ts)) FROM readings"
                            ).fetchone() == (120 * 120, 120 * 120)  # fmt: skip
        assert conn.execute("SELECT count(*) FROM aggregates_1m").fetchone() == (240,)
        quarters = conn.execute(
            "SELECT s.name, count(*), sum(a.count), min(a.count), max(a.mean) "
            "FROM aggregates_15m a JOIN streams s ON s.id = a.stream GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert quarters == [
            ("dma-01/inlet/flow_lps", 8, 120 * 60, 15 * 60, 1.0),
            ("dma-01/pz-1/pressure_m", 8, 120 * 60, 15 * 60, 2.0),
        ]
        # T0 is 05:30 IST: the two hours are 05:30-06:00, 06:00-07:00, 07:00-07:30 IST
        hours = conn.execute(
            "SELECT count FROM aggregates_1h a JOIN streams s ON s.id = a.stream "
            "WHERE s.name = 'dma-01/inlet/flow_lps' ORDER BY bucket"
        ).fetchall()
        assert hours == [(30 * 60,), (60 * 60,), (30 * 60,)]
