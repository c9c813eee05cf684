"""PostgresSink rows/s against raw psycopg binary COPY into the same indexed table.

Both write the same readings into `readings` (primary key (stream, ts)) of a
fresh database, emptied between runs:

- baseline: the COPY payload is built beforehand, then `COPY readings FROM STDIN
  (FORMAT BINARY)` straight into the table: the fastest way in, with no
  protection against duplicates (a re-sent batch would fail on the key).
- sink: `PostgresSink.write(bundle)` end to end: stream-id mapping, building
  the payload from the numpy columns, COPY into a temporary staging table,
  then `INSERT ... SELECT ... ON CONFLICT DO NOTHING`, one transaction per
  bundle. This is what makes a re-sent bundle harmless.

Runs alternate and the best of `--repeat` is kept for each. Usage:
    python -m bench.sink                       # 2,000,000 rows in bundles of 50,000
    python -m bench.sink --rows 5000000 --bundle 100000 --dsn postgresql://postgres@127.0.0.1/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

from gateway.batch import NS_PER_S, ReadingBatch
from gateway.bundle import Bundle
from gateway.db import pgcopy
from gateway.db.migrate import migrate
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry

DAY = 86_400 * NS_PER_S
T0 = (time.time_ns() // DAY - 1) * DAY  # recent: retention keeps it


def bundles(rows: int, size: int, streams: int) -> list[Bundle]:
    rng = np.random.default_rng(1)
    out = []
    per_stream = rows // streams
    for start in range(0, rows, size):
        i = np.arange(start, min(rows, start + size))
        out.append(
            Bundle(
                readings=ReadingBatch.of(
                    T0 + (i // streams) * (NS_PER_S // 10),  # 10 Hz per stream
                    i % streams,
                    rng.normal(50, 5, len(i)),
                    np.zeros(len(i)),
                )
            )
        )
    assert per_stream > 0
    return out


async def run(args: argparse.Namespace) -> None:
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(args.dsn, dbname=name)
    try:
        await migrate(dsn)
        registry = StreamRegistry()
        for s in range(args.streams):
            registry.register(f"dma-{s // 10:02d}/pz-{s % 10}/pressure_m", "m", "pressure")
        data = bundles(args.rows, args.bundle, args.streams)
        sink = PostgresSink(dsn, registry, "bench", pool_max_size=1)
        await sink.open()
        await sink.write(data[0])  # registers the streams: ids exist for the baseline too
        ids = sink._global.copy()
        payloads = [
            pgcopy.encode_rows(
                [
                    pgcopy.Column(ids[b.readings.stream], pgcopy.INT4),
                    pgcopy.Column(pgcopy.timestamptz(b.readings.ts), pgcopy.INT8),
                    pgcopy.Column(b.readings.value, pgcopy.FLOAT8),
                    pgcopy.Column(b.readings.quality, pgcopy.INT2),
                ]
            )
            for b in data
        ]
        conn = await psycopg.AsyncConnection.connect(dsn)
        best_copy = best_sink = float("inf")
        for _ in range(args.repeat):
            await conn.execute("TRUNCATE readings")
            await conn.commit()
            started = time.perf_counter()
            for payload in payloads:
                async with (
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY readings (stream, ts, value, quality) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    await copy.write(payload)
                await conn.commit()
            best_copy = min(best_copy, time.perf_counter() - started)
            await conn.execute("TRUNCATE readings")
            await conn.commit()
            started = time.perf_counter()
            for b in data:
                await sink.write(b)
            best_sink = min(best_sink, time.perf_counter() - started)
        started = time.perf_counter()
        for b in data[: max(1, len(data) // 4)]:
            await sink.write(b)  # every row already stored: a replay after a crash
        resend = (time.perf_counter() - started) / (max(1, len(data) // 4) * args.bundle)
        await conn.close()
        await sink.close()
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    copy_rate = args.rows / best_copy
    sink_rate = args.rows / best_sink
    print(
        f"rows {args.rows}, bundles of {args.bundle}, {args.streams} streams, best of {args.repeat}"
    )
    print(f"raw binary COPY into readings : {copy_rate:>12,.0f} rows/s")
    print(f"PostgresSink (staging, idempotent): {sink_rate:>12,.0f} rows/s")
    print(f"ratio sink / raw COPY         : {sink_rate / copy_rate:.2f}  (goal >= 0.70)")
    print(f"re-sent bundle (all duplicates): {1 / resend:>12,.0f} rows/s")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--bundle", type=int, default=50_000)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
