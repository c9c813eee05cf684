"""`gateway db status` on both servers: what it shows, and when it exits non-zero."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

from gateway.batch import NS_PER_S, AggregateBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.db.command import register
from gateway.db.settings import RetentionSettings
from gateway.db.status import read_status
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry
from tests.conftest import PgServer
from tests.db.jobs import COMPRESSION, migrate_held, refresh_rollups, run_jobs

MINUTE = 60 * NS_PER_S
DAY = 86_400 * NS_PER_S


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """`gateway db status ARGV` as a user runs it (its own event loop, so off this one)."""
    parser = argparse.ArgumentParser(prog="gateway")
    register(parser.add_subparsers())
    args = parser.parse_args(["db", "status", *argv])
    code: int = await asyncio.to_thread(args.func, args)
    return code, capsys.readouterr().out


async def write_recent(dsn: str, hours: int = 4) -> None:
    """Minute aggregates for the last `hours`, up to the minute before this one,
    and a day of raw readings ten days ago (old enough to compress)."""
    reg = StreamRegistry()
    reg.register("dma-07/inlet/flow_lps", "L/s", "flow")
    end = time.time_ns() // MINUTE * MINUTE - MINUTE
    ts = np.arange(end - hours * 60 * MINUTE, end + 1, MINUTE, dtype=np.int64)
    n = len(ts)
    ones = np.ones(n)
    minutes = AggregateBatch(
        ts, np.zeros(n, np.int32), np.full(n, 60, np.int32), ones, ones, ones, 60 * ones, ones
    )
    old = (time.time_ns() // DAY - 10) * DAY + np.arange(0, DAY, 10 * NS_PER_S, dtype=np.int64)
    raw = ReadingBatch.of(old, np.zeros(len(old)), np.sin(np.arange(len(old)) / 50.0))
    sink = PostgresSink(dsn, reg, "gw-status")
    await sink.open()
    try:
        await sink.write(Bundle(aggregates=minutes, readings=raw))
    finally:
        await sink.close()


async def test_a_healthy_database_in_either_mode(
    db_dsn: str, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate_held(db_dsn)
    await write_recent(db_dsn)
    refresh_rollups(db_dsn)
    status = await read_status(db_dsn, RetentionSettings(readings_days=45))
    assert (status.mode, status.version) == (pg_server.mode, 6)
    assert [r.name for r in status.rollups] == ["aggregates_15m", "aggregates_1h", "aggregates_1d"]
    for r in status.rollups:  # the day may not be over: aggregates_1d may have none yet
        assert r.lag is not None and not r.lagging, r
        assert r.newest is not None or r.name == "aggregates_1d", r
    fifteen = status.rollups[0]
    if pg_server.mode == "postgres":  # written in the same transaction as the minutes
        assert fifteen.lag is not None and fifteen.lag.total_seconds() == 0
        assert status.hypertables == () and status.jobs == ()
        assert ("readings", 45 * 86_400.0, "config") in [
            (z.table, z.drop_after.total_seconds() if z.drop_after else None, z.source)
            for z in status.horizons
        ]
    else:
        assert fifteen.lag is not None and fifteen.lag.total_seconds() <= 30 * 60
        chunks = {h.name: h.chunks for h in status.hypertables}
        assert chunks["readings"] == 1 and chunks["aggregates_1m"] >= 1
        procs = {(j.proc, j.relation) for j in status.jobs}
        assert ("policy_refresh_continuous_aggregate", "aggregates_1d") in procs
        assert ("policy_retention", "readings") in procs
        assert all(not j.scheduled for j in status.jobs if j.relation), "held by the test"
        horizons = {z.table: z.drop_after for z in status.horizons}
        assert horizons["readings"] is not None and horizons["readings"].days == 30
        assert horizons["events"] is None
    sizes = {t.name: t.bytes for t in status.tables}
    assert set(sizes) >= {"readings", "aggregates_1m", "alerts", "streams"}
    assert sizes["readings"] > 0

    code, out = await run(capsys, "--dsn", db_dsn)
    assert code == 0 and f"mode: {pg_server.mode}, schema version 6" in out
    assert "status: ok" in out and "aggregates_1d" in out
    code, out = await run(capsys, "--dsn", db_dsn, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["mode"] == pg_server.mode and doc["problems"] == []
    assert {r["name"] for r in doc["rollups"]} == {
        "aggregates_15m",
        "aggregates_1h",
        "aggregates_1d",
    }


async def test_compression_shows_its_ratio(
    tsdb_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate_held(tsdb_dsn)
    await write_recent(tsdb_dsn)
    assert run_jobs(tsdb_dsn, COMPRESSION, "readings") == 1
    status = await read_status(tsdb_dsn, RetentionSettings())
    (readings,) = [h for h in status.hypertables if h.name == "readings"]
    assert readings.compressed_chunks == 1
    assert readings.compression_ratio is not None and readings.compression_ratio > 2
    _, out = await run(capsys, "--dsn", tsdb_dsn)
    assert "1 chunks (1 compressed)" in out and "compression" in out


async def test_rollups_left_unrefreshed_lag_and_fail_the_check(
    db_dsn: str, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate_held(db_dsn)  # TimescaleDB: no refresh runs, as if the jobs were failing
    await write_recent(db_dsn)
    status = await read_status(db_dsn, RetentionSettings())
    lagging = [r.name for r in status.rollups if r.lagging]
    code, out = await run(capsys, "--dsn", db_dsn)
    if pg_server.mode == "postgres":  # plain mode's rollups cannot fall behind
        assert lagging == [] and code == 0
        return
    assert lagging == ["aggregates_15m", "aggregates_1h"], "4 hours of minutes: not 2 days"
    assert code == 1 and "UNHEALTHY" in out
    assert "problem: aggregates_15m is " in out and "behind its minutes" in out


async def test_a_job_failing_in_a_row_fails_the_check(
    tsdb_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate_held(tsdb_dsn)
    with psycopg.connect(tsdb_dsn, autocommit=True) as conn:
        (job,) = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'readings'"
        ).fetchone() or (None,)
        # the history TimescaleDB's scheduler writes, as PostgreSQL 15.20 makes it (README
        # of ../shared/timescaledb): a success, then four failures; written here rather
        # than waited for
        conn.execute(
            "INSERT INTO _timescaledb_internal.bgw_job_stat_history "
            "(job_id, pid, execution_start, execution_finish, succeeded, data) "
            "SELECT %s, 1, now() + k * interval '1 second', now() + k * interval '1 second', "
            "k = 0, CASE WHEN k > 0 THEN jsonb_build_object('error_data', "
            "jsonb_build_object('message', 'cannot drop portal \"\" while it is being set up')) "
            "END FROM generate_series(0, 4) AS k",
            (job,),
        )
    status = await read_status(tsdb_dsn, RetentionSettings())
    (failing,) = [j for j in status.jobs if j.id == job]
    assert failing.failures_in_a_row == 4
    assert failing.last_error == 'cannot drop portal "" while it is being set up'
    code, out = await run(capsys, "--dsn", tsdb_dsn, "--max-failures", "3")
    assert code == 1
    assert f"problem: job {job} (policy_retention readings) failed 4 times in a row" in out
    code, out = await run(capsys, "--dsn", tsdb_dsn, "--max-failures", "4", "--json")
    assert code == 0 and json.loads(out)["problems"] == []


def test_an_unmigrated_or_unreachable_database_exits_2(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="gateway")
    register(parser.add_subparsers())
    for dsn, why in ((pg_dsn, "not migrated"), ("postgresql://postgres@127.0.0.1:9/x", "connect")):
        args = parser.parse_args(["db", "status", "--dsn", dsn])
        assert args.func(args) == 2
        assert why in capsys.readouterr().err


async def test_the_config_file_gives_the_dsn_and_plain_modes_horizons(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate_held(pg_dsn)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[postgres]\ndsn = "{pg_dsn}"\n[postgres.retention]\nreadings_days = 45\n')
    code, out = await run(capsys, "-c", str(config))
    assert code == 0 and "mode: postgres, schema version 6" in out
    assert "readings           drop after 45 days (config)" in out
    assert "events             kept (config)" in out
