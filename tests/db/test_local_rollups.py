"""Migration 0005: 1 h and 1 d rollups in local hours and days of the configured zone
(Asia/Kolkata by default; DST zones too), fixed at migrate. The first tests run on
plain PostgreSQL and on TimescaleDB; the rest are about plain mode's own rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from gateway.batch import NS_PER_S, AggregateBatch
from gateway.bundle import Bundle
from gateway.db import migrate as m
from gateway.db.migrate import MigrationError, migrate
from gateway.db.settings import PostgresSettings
from gateway.settings import load_settings
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry
from tests.db.jobs import is_timescaledb, migrate_held, refresh_rollups

ROOT = Path(__file__).resolve().parents[2]
MINUTE = timedelta(minutes=1)


def query(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def minutes(at: list[datetime]) -> AggregateBatch:
    n = len(at)
    ns = np.array([int(t.timestamp()) * NS_PER_S for t in at], np.int64)
    ones = np.ones(n)
    return AggregateBatch(
        ns, np.zeros(n, np.int32), np.full(n, 60, np.int32), ones, ones, ones, 60 * ones, ones
    )


def buckets(dsn: str, table: str) -> list[tuple[object, ...]]:
    return query(dsn, f"SELECT bucket, count FROM {table} ORDER BY bucket")


async def test_minutes_written_by_the_sink_land_in_local_days_and_hours(db_dsn: str) -> None:
    pg_dsn = db_dsn
    report = await migrate_held(pg_dsn)  # Asia/Kolkata, UTC+05:30
    assert report.rollup_timezone == "Asia/Kolkata"
    # a recent local day (retention keeps its minutes): starts 18:30 UTC the day before
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=3) + timedelta(hours=18, minutes=30)
    end = start + timedelta(days=1)
    reg = StreamRegistry()
    reg.register("dma-07/inlet/flow_lps", "L/s", "flow")
    sink = PostgresSink(pg_dsn, reg, "gw-local")
    await sink.open()
    try:
        # two bundles: the second must recompute the whole local day and hour,
        # minutes of the first included
        await sink.write(Bundle(aggregates=minutes([start - MINUTE, start, start + 59 * MINUTE])))
        await sink.write(Bundle(aggregates=minutes([start + 60 * MINUTE, end - MINUTE, end])))
    finally:
        await sink.close()
    refresh_rollups(pg_dsn)  # TimescaleDB: the refresh policies, as scheduled
    assert buckets(pg_dsn, "aggregates_1d") == [
        (start - timedelta(days=1), 60),
        (start, 4 * 60),  # local midnight to local midnight
        (end, 60),
    ]
    assert buckets(pg_dsn, "aggregates_1h") == [
        (start - timedelta(hours=1), 60),  # 23:00 IST the day before
        (start, 2 * 60),  # 00:00 - 01:00 IST: :30 to :30 UTC
        (start + timedelta(hours=1), 60),
        (end - timedelta(hours=1), 60),
        (end, 60),
    ]
    assert [b for b, _ in buckets(pg_dsn, "aggregates_1d")] == [
        b for b, in query(pg_dsn, "SELECT DISTINCT date_trunc('day', ts, 'Asia/Kolkata') "
                                  "FROM aggregates_1m ORDER BY 1")
    ]  # fmt: skip
    assert all(b.astimezone(UTC).strftime("%H:%M") == "18:30" for b, _ in buckets(
        pg_dsn, "aggregates_1d"))  # type: ignore[attr-defined]  # fmt: skip
    # 15-minute buckets: the UTC grid, which is IST's (05:30 is a multiple of 15 minutes)
    assert [c for _, c in buckets(pg_dsn, "aggregates_15m")] == [60] * 6


def refresh_hour_by_hour(dsn: str, first: datetime, last: datetime) -> None:
    """Plain: as the sink does, batch by batch. TimescaleDB: the back-fill of
    docs/schema.md (this is older than the policies' window), one call per view."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if is_timescaledb(dsn):
            for view in ("aggregates_1h", "aggregates_1d"):
                conn.execute(
                    "CALL refresh_continuous_aggregate(%s, %s, %s)",
                    (view, first - timedelta(days=2), last + timedelta(days=2)),
                )
            return
        t = first
        while t < last:
            conn.execute("SELECT gateway_refresh_rollups(ARRAY[1], %s, %s)", (t, t + 59 * MINUTE))
            t += timedelta(hours=1)


async def test_a_dst_day_in_berlin_has_25_hours(db_dsn: str) -> None:
    pg_dsn = db_dsn
    await migrate_held(pg_dsn, rollup_timezone="Europe/Berlin")
    # 2024-10-27, the last Sunday of October: 00:00 CEST = 22:00 UTC the day before,
    # 03:00 CEST becomes 02:00 CET, and the day ends at 00:00 CET = 23:00 UTC
    first, last = utc(2024, 10, 26, 21, 0), utc(2024, 10, 28, 0, 0)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO aggregates_1m (stream, ts, count, min, max, mean, sum, last) "
            "SELECT 1, t, 1, 1, 1, 1, 1, extract(epoch FROM t) "
            "FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute', "
            "interval '1 minute') AS t",
            (first, last),
        )
    refresh_hour_by_hour(pg_dsn, first, last)
    assert buckets(pg_dsn, "aggregates_1d") == [
        (utc(2024, 10, 25, 22, 0), 60),
        (utc(2024, 10, 26, 22, 0), 25 * 60),
        (utc(2024, 10, 27, 23, 0), 60),
    ]
    hours = buckets(pg_dsn, "aggregates_1h")
    assert len(hours) == 27 and {c for _, c in hours} == {60}
    # 02:00 CEST and 02:00 CET are two hours, not one
    assert (utc(2024, 10, 27, 0, 0), 60) in hours and (utc(2024, 10, 27, 1, 0), 60) in hours
    day = query(
        pg_dsn,
        "SELECT last FROM aggregates_1d WHERE bucket = %s",
        (utc(2024, 10, 26, 22, 0),),
    )
    assert day == [(utc(2024, 10, 27, 22, 59).timestamp(),)], "last: the day's latest minute"
    # a late minute refreshed alone recomputes its whole 25-hour day, from the minutes
    # before it and after it
    morning = utc(2024, 10, 26, 22, 0)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE aggregates_1m SET count = 2 WHERE ts = %s", (morning,))
    refresh_hour_by_hour(pg_dsn, morning, morning + MINUTE)
    assert buckets(pg_dsn, "aggregates_1d")[1] == (morning, 25 * 60 + 1)
    assert (morning, 61) in buckets(pg_dsn, "aggregates_1h")


async def test_migrating_a_utc_database_rebuilds_its_rollups_in_local_time(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = m.load_migrations
    monkeypatch.setattr(m, "load_migrations", lambda: [x for x in original() if x.version < 5])
    await migrate(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO aggregates_1m (stream, ts, count, min, max, mean, sum, last) "
            "SELECT 7, t, 1, 1, 1, 1, 1, 1 FROM generate_series("
            "timestamptz '2025-06-01 00:00+00', timestamptz '2025-06-02 23:59+00', "
            "interval '1 minute') AS t"
        )
        conn.execute(
            "SELECT gateway_refresh_rollups(ARRAY[7], '2025-06-01 00:00+00', '2025-06-02 23:59+00')"
        )
    assert [b for b, _ in buckets(pg_dsn, "aggregates_1d")] == [
        utc(2025, 6, 1, 0, 0), utc(2025, 6, 2, 0, 0),
    ], "0003: UTC days"  # fmt: skip
    fifteen = buckets(pg_dsn, "aggregates_15m")
    monkeypatch.setattr(m, "load_migrations", original)
    report = await migrate(pg_dsn)
    assert report.applied == ("0005_local_rollups", "0006_privileges")
    assert buckets(pg_dsn, "aggregates_1d") == [
        (utc(2025, 5, 31, 18, 30), 1110),  # 1 June IST, from 05:30 (00:00 UTC)
        (utc(2025, 6, 1, 18, 30), 1440),
        (utc(2025, 6, 2, 18, 30), 330),
    ]
    hours = buckets(pg_dsn, "aggregates_1h")
    assert hours[0] == (utc(2025, 5, 31, 23, 30), 30) and hours[-1] == (
        utc(2025, 6, 2, 23, 30), 30,
    )  # fmt: skip
    assert len(hours) == 49 and sum(int(str(c)) for _, c in hours) == 2 * 1440
    assert buckets(pg_dsn, "aggregates_15m") == fifteen, "15-minute buckets untouched"


async def test_migrate_again_is_a_no_op_and_another_zone_is_refused(pg_dsn: str) -> None:
    await migrate(pg_dsn, rollup_timezone="Asia/Kolkata")
    source = "SELECT prosrc FROM pg_proc WHERE proname = 'gateway_refresh_rollups'"
    before = query(pg_dsn, source)
    again = await migrate(pg_dsn, rollup_timezone="Asia/Kolkata")
    assert again.applied == () and again.rollup_timezone == "Asia/Kolkata"
    with pytest.raises(MigrationError) as info:
        await migrate(pg_dsn, rollup_timezone="Europe/Berlin")
    message = str(info.value)
    assert "in local time of Asia/Kolkata, not Europe/Berlin" in message
    assert "--rollup-timezone Asia/Kolkata" in message and "new migration" in message
    assert query(pg_dsn, "SELECT timezone FROM rollup_settings") == [("Asia/Kolkata",)]
    assert query(pg_dsn, source) == before and "'Asia/Kolkata'" in str(before[0][0])


async def test_a_zone_that_is_not_an_iana_name_is_refused(pg_dsn: str) -> None:
    for bad in ("IST", "+05:30", "Asia/Pune", "Asia/Kolkata'; DROP TABLE streams; --"):
        with pytest.raises(MigrationError, match="rollup_timezone"):
            await migrate(pg_dsn, rollup_timezone=bad)
        with pytest.raises(ValueError, match="rollup_timezone"):
            PostgresSettings(rollup_timezone=bad)
    assert query(pg_dsn, "SELECT to_regclass('streams')") == [(None,)], "nothing ran"
    # a name Python knows but this server's time zone data does not
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="does not know the time zone Nowhere/Else"):
            await m._check_rollup_timezone(conn, "Nowhere/Else", needed=True)
        await m._check_rollup_timezone(conn, "Europe/Berlin", needed=True)


def test_the_example_config_sets_the_zone() -> None:
    settings = load_settings(ROOT / "config" / "gateway.example.toml")
    assert settings.first_sink("postgres").rollup_timezone == "Asia/Kolkata"
    assert "rollup_timezone" in (ROOT / "config" / "gateway.example.toml").read_text()


def test_only_the_zone_is_substituted_and_quoted() -> None:
    for x in m.load_migrations():
        rendered = x.render({"rollup_timezone": "Asia/Kolkata"})
        assert ":'" not in rendered, x.name
        if x.version == 5:
            assert x.params == {"rollup_timezone"}
            assert "'Asia/Kolkata'" in rendered
            assert x.checksum == m.Migration(x.version, x.name, x.mode, x.sql).checksum
        else:
            assert rendered == x.sql, "an applied migration's SQL must not change"
    (five,) = [x for x in m.plan("postgres") if x.version == 5]
    assert "'it''s'" in five.render({"rollup_timezone": "it's"})
    with pytest.raises(MigrationError, match="needs rollup_timezone"):
        five.render({})
