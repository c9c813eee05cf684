"""N gateways into one central TimescaleDB at once: PostgresSink against raw COPY.

Each DMA cluster and depot runs its own gateway, and they all write into one
central database. For N = 1, 2, 4 this runs, in the same run and alternating:

- raw: N processes, each a raw psycopg binary COPY straight into the
  `readings` hypertable (payloads built beforehand with the gateway's global
  stream ids; no duplicate protection): the fastest way in;
- sink: N processes, each a gateway's `PostgresSink` (its own gateway id, the
  same 200 stream names as the others) writing the same rows end to end: id
  mapping, numpy-built COPY into staging, INSERT ... SELECT, one transaction
  per bundle.

It reports rows/s for each, the ratio sink / raw, and the database's CPU:
user + system time of the server backends serving the N connections (from
/proc/<pid>/stat, so the server must run on this machine) over the wall time,
in cores, and in CPU seconds per million rows. Workers start together on a
barrier once connected and warmed up; `readings` is emptied before each phase;
the best of --repeat is kept. Usage:

    python -m bench.central_db                   # TimescaleDB at 127.0.0.1:5433
    python -m bench.central_db --rows 400000 --repeat 3 --dsn postgresql://postgres@db/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing as mp
import os
import sys
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

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
STREAMS = 200
TICK = os.sysconf("SC_CLK_TCK")


def registry() -> StreamRegistry:
    reg = StreamRegistry()
    for s in range(STREAMS):
        reg.register(f"dma-{s // 10:02d}/pz-{s % 10}/pressure_m", "m", "pressure")
    return reg


def bundles(rows: int, size: int, seed: int) -> list[Bundle]:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, rows, size):
        i = np.arange(start, min(rows, start + size))
        out.append(
            Bundle(
                readings=ReadingBatch.of(
                    T0 + (i // STREAMS) * (NS_PER_S // 10),  # 10 Hz per stream
                    i % STREAMS,
                    rng.normal(50, 5, len(i)),
                    np.zeros(len(i)),
                )
            )
        )
    return out


def warm_up(at: int) -> Bundle:
    """One reading per stream at `at`: resolves a gateway's stream ids."""
    return Bundle(
        readings=ReadingBatch.of(np.full(STREAMS, at), np.arange(STREAMS), np.zeros(STREAMS))
    )


def gateway_ids(dsn: str, gateway: str) -> np.ndarray:
    """The global ids of a gateway's streams, by local id (registered by a sink)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT name, id FROM streams WHERE gateway = %s", (gateway,)
        ).fetchall()
    by_name = dict(rows)
    reg = registry()
    return np.array([by_name[reg.name_of(s)] for s in range(STREAMS)], np.int32)


Gates = tuple[Barrier, Barrier, Barrier]  # connected and warm; start; finished


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    kind: str  # "raw" or "sink"
    dsn: str
    k: int  # gateway gw-<k>
    rows: int
    size: int  # rows per bundle


def worker(task: Task, gates: Gates, out: Queue) -> None:
    asyncio.run(_worker(task, gates, out))


async def _worker(task: Task, gates: Gates, out: Queue) -> None:
    """Write the task's rows between the start and finished gates; puts (start,
    end) on `out`, on the clock all processes share (CLOCK_MONOTONIC)."""
    ready, go, done = gates
    kind, dsn, k, rows, size = task.kind, task.dsn, task.k, task.rows, task.size
    data = bundles(rows, size, seed=k)
    gateway = f"gw-{k}"
    if kind == "sink":
        sink = PostgresSink(dsn, registry(), gateway, pool_max_size=1)
        await sink.open()
        # ids resolved, staging tables made, outside the timing (and outside the rows)
        await sink.write(warm_up(T0 - DAY))
        ready.wait()
        go.wait()
        start = time.monotonic()
        for b in data:
            await sink.write(b)
        out.put((start, time.monotonic()))
        done.wait()
        await sink.close()
        return
    ids = gateway_ids(dsn, gateway)
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
    ready.wait()
    go.wait()
    start = time.monotonic()
    for payload in payloads:
        async with (
            conn.cursor() as cur,
            cur.copy("COPY readings (stream, ts, value, quality) FROM STDIN (FORMAT BINARY)") as cp,
        ):
            await cp.write(payload)
        await conn.commit()
    out.put((start, time.monotonic()))
    done.wait()
    await conn.close()


def backend_cpu(pids: list[int]) -> float:
    """User + system seconds of these processes so far (0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (after pid, comm)
    return total / TICK


def phase(kind: str, dsn: str, n: int, rows: int, size: int) -> tuple[float, float | None]:
    """(seconds, database CPU seconds) of N workers writing `rows` each at once."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
    ctx = mp.get_context("spawn")
    gates = (ctx.Barrier(n + 1), ctx.Barrier(n + 1), ctx.Barrier(n + 1))
    out = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(Task(kind, dsn, k, rows, size), gates, out))
        for k in range(n)
    ]
    for p in procs:
        p.start()
    gates[0].wait()
    with psycopg.connect(dsn) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
    if len(pids) != n:
        sys.exit(f"expected {n} connections of the {kind} workers, found {len(pids)}")
    visible = all(os.path.exists(f"/proc/{pid}") for pid in pids)
    cpu0 = backend_cpu(pids)
    gates[1].wait()
    spans = [out.get() for _ in procs]
    cpu = backend_cpu(pids) - cpu0
    gates[2].wait()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit(f"a {kind} worker failed (exit {p.exitcode})")
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return wall, cpu if visible else None


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5433/postgres")
    p.add_argument("--rows", type=int, default=400_000, help="rows per gateway")
    p.add_argument("--bundle", type=int, default=50_000)
    p.add_argument("--gateways", default="1,2,4")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as err:
        sys.exit(
            f"cannot reach {args.dsn}: {err}; start TimescaleDB (../shared/timescaledb/install.sh)"
        )
    dsn = make_conninfo(args.dsn, dbname=name)
    try:
        report = asyncio.run(migrate(dsn))
        if report.mode != "timescaledb":
            sys.exit(f"{args.dsn} is not a TimescaleDB ({report.reason})")
        with psycopg.connect(dsn, autocommit=True) as conn:  # no background jobs meanwhile
            conn.execute(
                "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
                "WHERE hypertable_schema = 'public'"
            )
        for n in (int(x) for x in args.gateways.split(",")):
            asyncio.run(_register(dsn, n))
            best: dict[str, tuple[float, float | None]] = {}
            for _ in range(args.repeat):
                for kind in ("raw", "sink"):
                    wall, cpu = phase(kind, dsn, n, args.rows, args.bundle)
                    if kind not in best or wall < best[kind][0]:
                        best[kind] = (wall, cpu)
            total = n * args.rows
            (raw_s, raw_cpu), (sink_s, sink_cpu) = best["raw"], best["sink"]
            print(f"N={n}: {total:,} rows ({n} x {args.rows:,}), best of {args.repeat}")
            for label, secs, cpu in (
                ("raw COPY", raw_s, raw_cpu),
                ("PostgresSink", sink_s, sink_cpu),
            ):
                db = "n/a"
                if cpu is not None:
                    db = f"{cpu / secs:.2f} cores, {cpu / total * 1e6:.2f} CPU s per M rows"
                print(f"  {label:<13} {total / secs:>10,.0f} rows/s   database CPU {db}")
            print(f"  ratio sink / raw: {raw_s / sink_s:.2f}")
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _register(dsn: str, n: int) -> None:
    """Each gateway's streams, before the raw workers need their ids."""
    for k in range(n):
        sink = PostgresSink(dsn, registry(), f"gw-{k}")
        await sink.open()
        try:
            await sink.write(warm_up(T0 - 2 * DAY))
        finally:
            await sink.close()


if __name__ == "__main__":
    main()
