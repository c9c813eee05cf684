"""After kill -9, the outbox's entries decode to the same streams and vehicles in the next
process, whatever order that process registers them in, into every sink."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from gateway.db.migrate import migrate
from gateway.parts import Sink
from gateway.pipeline.outbox import Outbox
from gateway.runtime import Runtime, RuntimeSettings
from gateway.sinks.postgres import PostgresSink
from gateway.sinks.sqlite import SqliteSink
from gateway.streams import StreamRegistry
from tests.pipeline.outbox_traffic import DAY, STREAMS, T0, VEHICLES, expected, registry_for

ROOT = Path(__file__).resolve().parents[2]
Rows = dict[str, set[tuple[object, ...]]]


def fill_and_kill(path: Path, seed: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.pipeline.outbox_traffic", str(path), str(seed)],
        cwd=ROOT,
        env={**os.environ, "OUTBOX_TRAFFIC_NOW": str(T0 + DAY)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


async def drain(outbox: Outbox, sink: Sink) -> None:
    settings = RuntimeSettings(batch_max_rows=100, batch_max_seconds=0.01)
    runtime = Runtime([], [sink], settings=settings, queue_for=lambda _: outbox)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    async with asyncio.timeout(60):
        while outbox.rows:
            await asyncio.sleep(0.05)
    stop.set()
    await task


def stored_in_postgres(dsn: str) -> Rows:
    ns = "(extract(epoch FROM {0}) * 1000000)::bigint * 1000"
    with psycopg.connect(dsn) as conn:
        return {
            "readings": set(conn.execute(
                f"SELECT s.name, {ns.format('r.ts')}, r.value FROM readings r "
                "JOIN streams s ON s.id = r.stream"
            ).fetchall()),
            "aggregates": set(conn.execute(
                f"SELECT s.name, {ns.format('a.ts')}, a.mean FROM aggregates_1m a "
                "JOIN streams s ON s.id = a.stream"
            ).fetchall()),
            "fixes": set(conn.execute(
                f"SELECT v.name, {ns.format('p.ts')}, p.lat FROM vehicle_positions p "
                "JOIN vehicles v ON v.id = p.vehicle"
            ).fetchall()),
            "events": set(conn.execute(
                f"SELECT asset, {ns.format('ts')}, message FROM events"
            ).fetchall()),
            "alerts": set(conn.execute(
                f"SELECT asset, {ns.format('opened_at')}, magnitude FROM alerts"
            ).fetchall()),
        }  # fmt: skip


def stored_in_sqlite(path: Path) -> Rows:
    db = sqlite3.connect(path)
    try:
        alerts = [json.loads(b) for (b,) in db.execute("SELECT body FROM alerts")]
        events = [json.loads(b) for (b,) in db.execute("SELECT body FROM events")]
        return {
            "readings": set(db.execute(
                "SELECT s.name, r.ts, r.value FROM readings r JOIN streams s ON s.id = r.stream"
            ).fetchall()),
            "aggregates": set(db.execute(
                "SELECT s.name, a.ts, a.mean FROM aggregates_1m a JOIN streams s ON s.id = a.stream"
            ).fetchall()),
            "fixes": set(db.execute("SELECT vehicle, ts, lat FROM vehicle_positions").fetchall()),
            "events": {(e["asset"], e["ts"], e["message"]) for e in events},
            "alerts": {(a["asset"], a["opened_at"], a["magnitude"]) for a in alerts},
        }  # fmt: skip
    finally:
        db.close()


def assert_same(got: Rows) -> None:
    want = expected()
    for part, rows in want.items():
        extra, missing = got[part] - rows, rows - got[part]
        assert not extra and not missing, (
            f"{part}: {len(extra)} stored under a name or time never sent (e.g. "
            f"{sorted(extra, key=str)[:3]}), {len(missing)} missing (e.g. "
            f"{sorted(missing, key=str)[:3]})"
        )


def reordered() -> StreamRegistry:
    """The restarted process met other names first, then these in another order."""
    reg = registry_for(seed=2, extra=7)
    first = registry_for(seed=1)
    assert [reg.id_of(n) for n in STREAMS] != [first.id_of(n) for n in STREAMS]
    assert [reg.vehicles.id_of(v) for v in VEHICLES] != [first.vehicles.id_of(v) for v in VEHICLES]
    return reg


async def test_postgres_stores_every_row_under_its_own_name_after_kill_9(
    pg_dsn: str, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite"
    fill_and_kill(path, seed=1)
    await migrate(pg_dsn)
    reg = reordered()
    await drain(Outbox.open(path, reg), PostgresSink(pg_dsn, reg, "gw-order"))
    assert_same(stored_in_postgres(pg_dsn))


async def test_sqlite_stores_every_row_under_its_own_name_after_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    fill_and_kill(path, seed=1)
    reg = reordered()
    store = tmp_path / "store.sqlite"
    await drain(Outbox.open(path, reg), SqliteSink(store, reg))
    assert_same(stored_in_sqlite(store))


@pytest.mark.parametrize("restarts", [2])
async def test_names_survive_restarts_that_each_add_entries_in_a_new_order(
    tmp_path: Path, restarts: int
) -> None:
    """Entries written by several processes, each with its own order, in one file."""
    path = tmp_path / "outbox.sqlite"
    for seed in range(1, restarts + 1):
        fill_and_kill(path, seed=seed)
    reg = registry_for(seed=99, extra=3)
    store = tmp_path / "store.sqlite"
    await drain(Outbox.open(path, reg), SqliteSink(store, reg))
    assert_same(stored_in_sqlite(store))
