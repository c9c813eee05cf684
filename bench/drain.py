"""Drain rate after a 10-minute outage, as a multiple of the ingest rate (time-compressed).

The outage is simulated, not waited out: the backlog that `--outage` seconds
at `--rate` rows/s would leave is put into a fresh outbox up front (at full
speed, in 1-second bundles, as the source would have), aged past the live
window, and then a runtime starts with a live source at `--rate` rows/s and a
PostgresSink into a fresh database. Measured: how long the backlog takes to
reach the database while live data keeps flowing, the drain rate (backlog
rows / that time) as a multiple of the ingest rate, and how stale live data
was when written during the drain (it goes first). The backlog rate limit is
the outbox default (`backlog_rows_per_s`).

Usage:
    python -m bench.drain                         # 5,000 rows/s, 600 s outage
    python -m bench.drain --rate 20000 --outage 600
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

from gateway.batch import NS_PER_S, ReadingBatch
from gateway.bundle import Bundle
from gateway.db.migrate import migrate
from gateway.parts import Emit
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.outbox_file import OutboxSettings
from gateway.runtime import Runtime, RuntimeSettings
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry

STREAMS = 100
DAY = 86_400 * NS_PER_S
T0 = (time.time_ns() // DAY - 1) * DAY  # recent: retention keeps it


def second(k: int, rate: int) -> Bundle:
    """The readings of second k: `rate` rows over STREAMS streams."""
    i = np.arange(rate)
    ts = T0 + k * NS_PER_S + (i // STREAMS) * (NS_PER_S // max(1, rate // STREAMS))
    return Bundle(readings=ReadingBatch.of(ts, i % STREAMS, np.full(rate, float(k))))


class LiveSource:
    name = "live"

    def __init__(self, start: int, rate: int) -> None:
        self.k = start
        self.rate = rate

    async def run(self, emit: Emit) -> None:
        while True:
            await emit(second(self.k, self.rate))
            self.k += 1
            await asyncio.sleep(1.0)


class TimedSink(PostgresSink):
    def __init__(self, *a: object, backlog_end: int, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.backlog_end = backlog_end
        self.backlog_rows = 0
        self.backlog_done_at: float | None = None
        self.live_lag: list[float] = []
        self.started = time.monotonic()

    async def write(self, bundle: Bundle) -> None:
        await super().write(bundle)
        seconds = bundle.readings.value
        backlog = int((seconds < self.backlog_end).sum())
        self.backlog_rows += backlog
        if backlog < len(seconds):
            self.live_lag.append(time.monotonic() - self.started)


async def run(args: argparse.Namespace) -> None:
    backlog_seconds = int(args.outage)
    backlog_rows = backlog_seconds * args.rate
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(args.dsn, dbname=name)
    try:
        await migrate(dsn)
        settings = OutboxSettings(directory=str(root), live_window_s=args.live_window)
        registry = StreamRegistry()
        for s in range(STREAMS):
            registry.register(f"dma-{s // 10:02d}/pz-{s % 10}/pressure_m", "m", "pressure")
        outbox = Outbox.open(settings.path_for("postgres"), registry, settings)
        filled = time.perf_counter()
        for k in range(backlog_seconds):
            await outbox.put(second(k, args.rate))
        filled = time.perf_counter() - filled
        await asyncio.sleep(args.live_window + 0.1)  # the backlog is now older than live
        sink = TimedSink(dsn, registry, "bench", backlog_end=backlog_seconds)
        runtime = Runtime(
            [LiveSource(backlog_seconds, args.rate)],
            [sink],
            settings=RuntimeSettings(batch_max_rows=args.batch, batch_max_seconds=0.2),
            queue_for=lambda _: outbox,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        started = time.monotonic()
        sink.started = started
        first_live: float | None = None
        while sink.backlog_rows < backlog_rows:
            await asyncio.sleep(0.05)
            if first_live is None and sink.live_lag:
                first_live = sink.live_lag[0]
            if time.monotonic() - started > 600:
                raise SystemExit("the backlog did not drain within 10 minutes")
        drained = time.monotonic() - started
        stop.set()
        await task
        outbox.close_file()
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(root, ignore_errors=True)
    drain_rate = backlog_rows / drained
    print(
        f"ingest {args.rate:,} rows/s; outage {args.outage:.0f} s simulated: its backlog of "
        f"{backlog_rows:,} rows was put into the outbox in {filled:.1f} s (time-compressed)"
    )
    print(f"backlog drained in {drained:.1f} s while live data kept flowing")
    print(
        f"drain rate {drain_rate:,.0f} rows/s = {drain_rate / args.rate:.1f}x ingest (goal >= 3x)"
    )
    if first_live is not None:
        print(f"first live write {first_live:.2f} s after the database came back (live goes first)")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--dir", default="var/bench-drain")
    p.add_argument("--rate", type=int, default=5_000, help="ingest rows/s")
    p.add_argument("--outage", type=float, default=600.0, help="seconds of outage")
    p.add_argument("--batch", type=int, default=50_000, help="rows per sink write")
    p.add_argument("--live-window", type=float, default=2.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
