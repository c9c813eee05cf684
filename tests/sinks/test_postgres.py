"""PostgresSink against the real PostgreSQL: every part of a bundle, idempotent, fail-soft."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from gateway.batch import NS_PER_S, AggregateBatch, FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.db.settings import PostgresSettings, RetentionSettings
from gateway.events import Alert, Event, Reject, Severity
from gateway.parts import SinkUnavailable
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry
from tests.conftest import PgServer
from tests.db.jobs import RETENTION, migrate_held, refresh_rollups, run_jobs

DAY = 86_400 * NS_PER_S
T0 = (
    time.time_ns() // DAY - 1
) * DAY  # yesterday 00:00 UTC: recent, so retention (30 days of raw readings) keeps it


def registry() -> StreamRegistry:
    reg = StreamRegistry()
    reg.register("dma-07/inlet/flow_lps", "L/s", "flow")
    reg.register("dma-07/pz-3/pressure_m", "m", "pressure")
    reg.vehicles.intern("MH12-KQ-4321")
    reg.vehicles.intern("MH12-KQ-0007")
    return reg


def readings(n: int, start: int = 0) -> ReadingBatch:
    i = np.arange(start, start + n)
    return ReadingBatch.of(T0 + i * NS_PER_S, i % 2, i * 0.5, np.zeros(n))


@pytest.fixture
async def sink(db_dsn: str) -> AsyncIterator[PostgresSink]:
    await migrate_held(db_dsn)
    s = PostgresSink(db_dsn, registry(), "gw-test")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def query(dsn: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


async def test_readings_land_once_with_global_stream_ids(db_dsn: str, sink: PostgresSink) -> None:
    bundle = Bundle(readings=readings(1000))
    await sink.write(bundle)
    await sink.write(bundle)  # a retry after a lost confirmation
    assert sink.stats.readings_inserted == 1000
    assert sink.stats.readings_duplicate == 1000
    rows = query(
        db_dsn,
        "SELECT s.name, count(*), min(r.value), max(r.value) FROM readings r "
        "JOIN streams s ON s.id = r.stream GROUP BY 1 ORDER BY 1",
    )
    assert rows == [
        ("dma-07/inlet/flow_lps", 500, 0.0, 499.0),
        ("dma-07/pz-3/pressure_m", 500, 0.5, 499.5),
    ]
    first = query(db_dsn, "SELECT min(extract(epoch FROM ts)) FROM readings")[0][0]
    assert float(str(first)) == T0 / NS_PER_S
    assert await sink.count("readings") == 1000
    figures = {m.name: m.value for m in sink.measurements()}
    assert figures["postgres_readings_inserted_total"] == 1000
    assert figures["postgres_readings_duplicate_total"] == 1000


async def test_each_gateway_gets_its_own_stream_ids(db_dsn: str, sink: PostgresSink) -> None:
    other = PostgresSink(db_dsn, registry(), "gw-other")
    await other.open()
    try:
        await sink.write(Bundle(readings=readings(10)))
        await other.write(Bundle(readings=readings(10)))
    finally:
        await other.close()
    rows = query(db_dsn, "SELECT gateway, count(*) FROM streams GROUP BY 1 ORDER BY 1")
    assert rows == [("gw-other", 2), ("gw-test", 2)]
    assert await sink.count("readings") == 20


async def test_two_gateways_with_the_same_stream_names_stay_apart(db_dsn: str) -> None:
    """Two DMA clusters' gateways into one central database, at once: the same
    names, times and minutes, other values. Keyed by (gateway, name), nothing mixes."""
    await migrate_held(db_dsn)
    sinks = [PostgresSink(db_dsn, registry(), gw) for gw in ("dma-north", "dma-south")]
    for s in sinks:
        await s.open()
    try:
        bundles = []
        for k, _ in enumerate(sinks):
            i = np.arange(600)
            raw = ReadingBatch.of(T0 + i * NS_PER_S, i % 2, np.full(600, 100.0 * (k + 1)))
            one = np.ones(2)
            mins = AggregateBatch(
                np.array([T0, T0], np.int64), np.array([0, 1], np.int32),
                np.array([60, 60], np.int32), one, one, (k + 1) * one, 60 * (k + 1) * one, one,
            )  # fmt: skip
            bundles.append(Bundle(readings=raw, aggregates=mins))
        await asyncio.gather(*(s.write(b) for s, b in zip(sinks, bundles, strict=True)))
        await asyncio.gather(*(s.write(b) for s, b in zip(sinks, bundles, strict=True)))
    finally:
        for s in sinks:
            await s.close()
    assert query(
        db_dsn,
        "SELECT s.gateway, s.name, count(*), min(r.value), max(r.value) FROM readings r "
        "JOIN streams s ON s.id = r.stream GROUP BY 1, 2 ORDER BY 1, 2",
    ) == [
        ("dma-north", "dma-07/inlet/flow_lps", 300, 100.0, 100.0),
        ("dma-north", "dma-07/pz-3/pressure_m", 300, 100.0, 100.0),
        ("dma-south", "dma-07/inlet/flow_lps", 300, 200.0, 200.0),
        ("dma-south", "dma-07/pz-3/pressure_m", 300, 200.0, 200.0),
    ]
    refresh_rollups(db_dsn)
    assert query(
        db_dsn,
        "SELECT s.gateway, a.mean FROM aggregates_15m a JOIN streams s ON s.id = a.stream "
        "WHERE s.name = 'dma-07/inlet/flow_lps' ORDER BY 1",
    ) == [("dma-north", 1.0), ("dma-south", 2.0)]


async def test_new_streams_registered_later_are_resolved(db_dsn: str, sink: PostgresSink) -> None:
    await sink.write(Bundle(readings=readings(4)))
    new = sink.registry.register("dma-08/inlet/flow_lps", "L/s", "flow")
    batch = ReadingBatch.of([T0, T0 + NS_PER_S], [new, new], [1.0, 2.0])
    await sink.write(Bundle(readings=batch))
    rows = query(
        db_dsn,
        "SELECT count(*) FROM readings r JOIN streams s ON s.id = r.stream "
        "WHERE s.name = 'dma-08/inlet/flow_lps'",
    )
    assert rows == [(2,)]


async def test_failed_polls_are_null_with_their_quality(db_dsn: str, sink: PostgresSink) -> None:
    batch = ReadingBatch.of([T0, T0 + 1000], [0, 0], [np.nan, 2.0], [3, 0])
    await sink.write(Bundle(readings=batch))
    assert query(db_dsn, "SELECT value, quality FROM readings ORDER BY ts") == [
        (None, 3),
        (2.0, 0),
    ]


async def test_raw_readings_only_for_streams_that_opt_in(db_dsn: str) -> None:
    await migrate_held(db_dsn)
    s = PostgresSink(db_dsn, registry(), "gw-test", raw_streams=("*/pressure_m",))
    await s.open()
    try:
        await s.write(Bundle(readings=readings(10)))
    finally:
        await s.close()
    assert s.stats.readings_inserted == 5 and s.stats.readings_not_raw == 5


async def test_every_part_of_a_bundle_in_one_write(db_dsn: str, sink: PostgresSink) -> None:
    fixes = FixBatch(
        np.array([T0, T0, T0 + NS_PER_S], np.int64),
        np.array([0, 1, 0], np.int32),
        np.array([18.52, 18.53, np.nan]),
        np.array([73.85, 73.86, 73.87]),
        np.array([10.0, np.nan, 11.0], np.float32),
        np.array([90.0, 180.0, 91.0], np.float32),
        np.array([3, 3, 3], np.uint8),
    )
    minute = 60 * NS_PER_S
    aggregates = AggregateBatch(
        np.array([T0, T0 + minute], np.int64),
        np.array([0, 0], np.int32),
        np.array([60, 60], np.int32),
        np.array([1.0, 2.0]),
        np.array([3.0, 4.0]),
        np.array([2.0, 3.0]),
        np.array([120.0, 180.0]),
        np.array([2.5, 3.5]),
    )
    alert = Alert(
        "leak", "dma-07", Severity.WARNING, T0, message="night flow up",
        magnitude=1.5, evidence={"mnf": np.float64(2.5), "bad": float("nan")},
    )  # fmt: skip
    bundle = Bundle(
        readings=readings(4),
        fixes=fixes,
        aggregates=aggregates,
        events=(Event(T0, "dma-07/inlet", "tamper", "lid open", {"bit": 3}),),
        alerts=(alert,),
        rejects=(Reject(T0, "mqtt:pmpml/v1/x/pvt", "bad_json", "line 1", b"{oops"),),
    )
    await sink.write(bundle)
    await sink.write(bundle)
    assert query(db_dsn, "SELECT count(*) FROM readings") == [(4,)]
    assert query(
        db_dsn,
        "SELECT v.name, p.lat, p.speed FROM vehicle_positions p "
        "JOIN vehicles v ON v.id = p.vehicle ORDER BY v.name",
    ) == [("MH12-KQ-0007", 18.53, None), ("MH12-KQ-4321", 18.52, 10.0)]
    assert sink.stats.fixes_dropped == 2  # the NaN position, once per write
    assert query(db_dsn, "SELECT count, mean, last FROM aggregates_1m ORDER BY ts") == [
        (60, 2.0, 2.5),
        (60, 3.0, 3.5),
    ]
    # plain PostgreSQL: the sink keeps the rollups itself; TimescaleDB: the refresh policies
    refresh_rollups(db_dsn)
    assert query(db_dsn, "SELECT count, min, max, mean, sum, last FROM aggregates_15m") == [
        (120, 1.0, 4.0, 2.5, 300.0, 3.5)
    ]
    assert query(db_dsn, "SELECT count(*) FROM aggregates_1h") == [(1,)]
    assert query(db_dsn, "SELECT kind, data->>'bit' FROM events") == [("tamper", "3")]
    assert query(db_dsn, "SELECT reason, payload FROM rejects") == [("bad_json", b"{oops")]
    assert query(db_dsn, "SELECT state, magnitude, evidence FROM alerts") == [
        ("opened", 1.5, {"mnf": 2.5, "bad": None})
    ]


async def test_alerts_keep_the_latest_state_and_the_operators_ack(
    db_dsn: str, sink: PostgresSink
) -> None:
    opened = Alert("leak", "dma-07", Severity.WARNING, T0, magnitude=1.0)
    updated = opened.update(T0 + 60 * NS_PER_S, magnitude=2.0, severity=Severity.CRITICAL)
    cleared = updated.clear(T0 + 120 * NS_PER_S)
    await sink.write(Bundle(alerts=(opened,)))
    with psycopg.connect(db_dsn) as conn:  # the control room acknowledges it
        conn.execute("UPDATE alerts SET acked_by = 'asha', acked_at = now()")
    await sink.write(Bundle(alerts=(cleared,)))
    await sink.write(Bundle(alerts=(updated,)))  # an older state drained late from a backlog
    rows = query(db_dsn, "SELECT state, severity, magnitude, acked_by FROM alerts")
    assert rows == [("cleared", "critical", 2.0, "asha")]


async def test_an_unreachable_database_raises_sink_unavailable_never_crashes() -> None:
    s = PostgresSink(
        "postgresql://postgres@127.0.0.1:9/none", registry(), "gw", connect_timeout=1.0
    )
    await s.open()  # must not raise: the daemon starts without its database
    try:
        with pytest.raises(SinkUnavailable):
            await s.write(Bundle(readings=readings(3)))
    finally:
        await asyncio.wait_for(s.close(), 10)


async def test_an_unmigrated_database_says_to_migrate(db_dsn: str) -> None:
    s = PostgresSink(db_dsn, registry(), "gw")
    await s.open()
    try:
        with pytest.raises(SinkUnavailable, match="gateway db migrate"):
            await s.write(Bundle(readings=readings(3)))
    finally:
        await s.close()


def test_password_comes_from_env_or_file_never_the_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="holds a password"):
        PostgresSettings(dsn="postgresql://gw:secret@db/gateway")
    monkeypatch.setenv("GW_TEST_PW", "s3cret")
    settings = PostgresSettings(
        dsn="postgresql://gw@db/gateway?sslmode=verify-full", password_env="GW_TEST_PW"
    )
    info = settings.conninfo()
    assert "password=s3cret" in info and "sslmode=verify-full" in info
    monkeypatch.delenv("GW_TEST_PW")
    with pytest.raises(ConfigError, match="GW_TEST_PW"):
        settings.conninfo()
    (tmp_path / "pw").write_text("from-file\n")
    from_file = PostgresSettings(
        dsn="postgresql://gw@db/gateway", password_file=str(tmp_path / "pw")
    )
    assert "password=from-file" in from_file.conninfo()


async def test_rows_past_their_retention_go(db_dsn: str, pg_server: PgServer) -> None:
    retention = RetentionSettings(readings_days=30, rejects_days=0)
    await migrate_held(db_dsn, retention=retention)
    s = PostgresSink(db_dsn, registry(), "gw", retention=retention)
    await s.open()
    try:
        now = time.time_ns()
        old, new = now - 40 * 86_400 * NS_PER_S, now - 86_400 * NS_PER_S
        await s.write(
            Bundle(
                readings=ReadingBatch.of([old, new], [0, 0], [1.0, 2.0]),
                rejects=(Reject(old, "mqtt:x", "bad_json"),),
            )
        )
        if pg_server.mode == "timescaledb":  # the retention policies drop whole chunks
            assert query(db_dsn, "SELECT value FROM readings ORDER BY ts") == [(1.0,), (2.0,)]
            assert run_jobs(db_dsn, RETENTION) == 3, "readings, positions, minutes"
        # plain: the first write prunes (then hourly), so the old reading is gone already
        assert query(db_dsn, "SELECT value FROM readings") == [(2.0,)]
        assert await s.prune() == 0
    finally:
        await s.close()
    assert query(db_dsn, "SELECT count(*) FROM rejects") == [(1,)], "rejects_days=0 keeps them"


async def test_a_gateway_writer_login_can_write_everything_and_no_more(db_dsn: str) -> None:
    await migrate_held(db_dsn)
    user = f"gw_test_writer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE gateway_writer')
    try:
        dsn = make_conninfo(db_dsn, user=user)
        s = PostgresSink(dsn, registry(), "gw-roles")
        await s.open()
        try:
            minute = 60 * NS_PER_S
            aggregates = AggregateBatch(*(np.array([v], d) for v, d in zip(
                [T0 - T0 % minute, 0, 60, 1.0, 2.0, 1.5, 90.0, 2.0],
                AggregateBatch.DTYPES.values(), strict=True,
            )))  # fmt: skip
            alert = Alert("leak", "dma-07", Severity.WARNING, T0)
            bundle = Bundle(
                readings=readings(10),
                aggregates=aggregates,
                alerts=(alert,),
                events=(Event(T0, "dma-07", "tamper"),),
                rejects=(Reject(T0, "mqtt:x", "bad_json"),),
            )
            await s.write(bundle)
            await s.write(Bundle(readings=readings(10), alerts=(alert.clear(T0 + 1),)))
            assert await s.prune() == 0  # the writer may run it (SECURITY DEFINER)
        finally:
            await s.close()
        with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM readings")
    finally:
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{user}"')
            conn.execute(f'DROP ROLE "{user}"')
    assert query(db_dsn, "SELECT state FROM alerts") == [("cleared",)]
    refresh_rollups(db_dsn)
    assert query(db_dsn, "SELECT count FROM aggregates_15m") == [(60,)]
