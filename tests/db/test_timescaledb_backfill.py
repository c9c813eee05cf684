"""The back-fill that `gateway db migrate` prints after 0005, on a real TimescaleDB
whose retention has dropped minutes: the day rollups of those days must stay."""

from __future__ import annotations

import psycopg
import pytest

from gateway.db import migrate as m
from gateway.db.settings import RetentionSettings
from tests.db.jobs import RETENTION, hold_jobs, migrate_held, refresh_rollups, run_jobs

RETAIN = RetentionSettings(refresh_window_days=2, aggregates_days=10)


def scalar(dsn: str, sql: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return row[0]


def days(dsn: str) -> int:
    return int(str(scalar(dsn, "SELECT count(*) FROM aggregates_1d")))


async def test_the_printed_backfill_never_reaches_dropped_minutes(
    tsdb_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = tsdb_dsn
    original = m.load_migrations
    monkeypatch.setattr(m, "load_migrations", lambda: [x for x in original() if x.version < 5])
    await migrate_held(dsn, retention=RETAIN)
    with psycopg.connect(dsn, autocommit=True) as conn:  # a minute an hour for 24 days
        conn.execute(
            "INSERT INTO aggregates_1m (stream, ts, count, min, max, mean, sum, last) "
            "SELECT 1, t, 60, 1, 1, 1, 60, 1 FROM generate_series("
            "date_trunc('hour', now()) - interval '24 days', now() - interval '1 hour', "
            "interval '1 hour') AS t"
        )
    monkeypatch.setattr(m, "load_migrations", original)
    report = await m.migrate(dsn, retention=RETAIN)
    hold_jobs(dsn)
    assert report.applied == ("0005_local_rollups", "0006_privileges")
    statement = m.backfill_statement("aggregates_1h", "aggregates_1d")
    (note,) = report.notes
    assert note.endswith(statement) and "NULL" not in note
    assert "fill the last 2 days and 2 days 5 minutes" in note, "the policies' real windows"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement.encode())
    whole_days = scalar(  # the local days wholly inside [oldest minute, now)
        dsn,
        "SELECT count(DISTINCT d) FROM (SELECT date_trunc('day', ts, 'Asia/Kolkata') AS d "
        "FROM aggregates_1m) AS x WHERE d >= (SELECT min(ts) FROM aggregates_1m) "
        "AND d + interval '1 day' <= now()",
    )
    assert days(dsn) == int(str(whole_days)) >= 22, "every whole local day is materialised"
    before = days(dsn)

    assert run_jobs(dsn, RETENTION, "aggregates_1m") == 1
    assert scalar(dsn, "SELECT min(ts) > now() - interval '18 days' FROM aggregates_1m"), (
        "retention dropped the oldest chunk of minutes"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:  # printed again, run again
        conn.execute(statement.encode())
    refresh_rollups(dsn)
    assert days(dsn) == before, "no day rollup went with its minutes"

    # what migrate printed before: a refresh from NULL deletes the days retention dropped
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL refresh_continuous_aggregate('aggregates_1d', NULL, now())")
    assert days(dsn) < before
