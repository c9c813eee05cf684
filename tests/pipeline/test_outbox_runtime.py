"""The outbox inside the runtime: what is not delivered by the shutdown deadline
stays on disk and goes out after the next start."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import psycopg

from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.db.migrate import migrate
from gateway.parts import Emit
from gateway.pipeline.outbox import Outbox
from gateway.runtime import Runtime, RuntimeSettings
from gateway.sinks.postgres import PostgresSink
from tests.fakes import flow_registry

DAY = 86_400 * 1_000_000_000
T0 = (
    time.time_ns() // DAY - 1
) * DAY  # yesterday 00:00 UTC: recent, so retention (30 days of raw readings) keeps it


class Burst:
    name = "burst"

    def __init__(self, bundles: int, rows: int) -> None:
        self.bundles = bundles
        self.rows = rows

    async def run(self, emit: Emit) -> None:
        for k in range(self.bundles):
            i = np.arange(k * self.rows, (k + 1) * self.rows)
            await emit(Bundle(readings=ReadingBatch.of(T0 + i * 1000, np.zeros(len(i)), i)))
        await asyncio.Event().wait()


async def run_once(sink: PostgresSink, outbox: Outbox, source: Burst | None, secs: float) -> None:
    settings = RuntimeSettings(batch_max_rows=1000, batch_max_seconds=0.05, drain_timeout=0.5)
    runtime = Runtime([source] if source else [], [sink], settings=settings,
                      queue_for=lambda _: outbox)  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await asyncio.sleep(secs)
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_undelivered_rows_stay_on_disk_for_the_next_start(
    pg_dsn: str, tmp_path: Path
) -> None:
    await migrate(pg_dsn)
    path = tmp_path / "outbox-postgres.sqlite"
    reg = flow_registry()
    down = PostgresSink("postgresql://postgres@127.0.0.1:9/x", reg, "gw", connect_timeout=1)
    outbox = Outbox.open(path, reg)
    await run_once(down, outbox, Burst(5, 400), 0.5)
    outbox.close_file()
    assert Outbox.open(path, flow_registry()).rows == 2000, (
        "the outbox kept everything through the stop"
    )
    reg = flow_registry()
    up = PostgresSink(pg_dsn, reg, "gw")
    outbox = Outbox.open(path, reg)
    await run_once(up, outbox, None, 1.0)
    assert outbox.rows == 0
    outbox.close_file()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*), max(value) FROM readings").fetchone() == (2000, 1999)
