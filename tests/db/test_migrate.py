"""Migrations against the real PostgreSQL: applied once, recorded, locked, mode reported."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.db import migrate as m
from gateway.db.migrate import MigrationError, ensure_database, migrate, plan
from tests.conftest import PgServer, skip_timescaledb

TABLES = {
    "streams",
    "vehicles",
    "readings",
    "aggregates_1m",
    "vehicle_positions",
    "alerts",
    "events",
    "rejects",
    "aggregates_15m",
    "aggregates_1h",
    "aggregates_1d",
    "schema_migrations",
    "rollup_settings",
}


def tables(dsn: str) -> set[str]:
    """Tables and views (TimescaleDB's rollups are continuous aggregates, views)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def listed_not_preloaded(dsn: str) -> bool:
    """The server offers timescaledb but does not preload it (the 5432 cluster
    after ../shared/timescaledb/install.sh, or any server with the package but
    not the configuration)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb'), "
            "current_setting('shared_preload_libraries')"
        ).fetchone()
    assert row is not None
    return bool(row[0]) and "timescaledb" not in str(row[1])


async def test_migrate_creates_the_schema_once_and_reports_the_mode(
    db_dsn: str, pg_server: PgServer
) -> None:
    pg_dsn = db_dsn
    first = await migrate(pg_dsn)
    assert first.mode == pg_server.mode
    if pg_server.mode == "timescaledb":
        assert first.reason == f"timescaledb {first.timescaledb_version} is installed"
        assert first.notes and "refresh_continuous_aggregate" in first.notes[0]
    else:  # the main server does not preload timescaledb
        assert "not available" in first.reason or "cannot be created" in first.reason
    assert first.applied == (
        "0001_tables", "0002_roles", "0003_time", "0004_writer_mode", "0005_local_rollups",
        "0006_privileges",
    )  # fmt: skip
    assert tables(pg_dsn) >= TABLES
    second = await migrate(pg_dsn)
    assert second.applied == () and second.current == 6
    assert f"mode: {pg_server.mode}" in second.describe()
    assert "kept from the first migration" in second.reason
    assert "local time of Asia/Kolkata" in second.describe()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT version, mode FROM schema_migrations ORDER BY 1").fetchall()
    assert rows == [(v, pg_server.mode) for v in range(1, 7)]


async def test_concurrent_migrations_queue_on_the_advisory_lock(db_dsn: str) -> None:
    reports = await asyncio.gather(*(migrate(db_dsn) for _ in range(3)))
    applied = [r.applied for r in reports]
    assert sorted(len(a) for a in applied) == [0, 0, 6], applied


async def test_an_edited_applied_migration_is_refused(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate(db_dsn)
    original = m.load_migrations

    def edited() -> list[m.Migration]:
        return [
            m.Migration(x.version, x.name, x.mode, x.sql + "\n-- edited") if x.version == 1 else x
            for x in original()
        ]

    monkeypatch.setattr(m, "load_migrations", edited)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(db_dsn)


async def test_asking_for_timescaledb_without_it_is_an_error(pg_dsn: str) -> None:
    with pytest.raises(MigrationError, match="timescaledb extension") as info:
        await migrate(pg_dsn, mode="timescaledb")
    assert "readings" not in tables(pg_dsn)
    if listed_not_preloaded(pg_dsn):
        assert "must be preloaded" in str(info.value)
        assert "shared_preload_libraries" in str(info.value)
        assert "\n" not in str(info.value), "one line, not the server's whole HINT"
        assert info.value.__context__ is None, "nothing raised while unlocking hides it"


@pytest.fixture
def listed_dsn(pg_dsn: str) -> str:
    """A database on a server that lists timescaledb but does not preload it."""
    if not listed_not_preloaded(pg_dsn):
        skip_timescaledb("the main server does not list timescaledb without preloading it")
    return pg_dsn


async def test_auto_mode_falls_back_when_timescaledb_is_listed_but_not_preloaded(
    listed_dsn: str,
) -> None:
    pg_dsn = listed_dsn
    # CREATE EXTENSION answers FATAL there and the server closes that session
    report = await migrate(pg_dsn)
    assert report.mode == "postgres" and report.timescaledb_version is None
    assert report.reason.startswith("timescaledb is available but cannot be created: ")
    assert "must be preloaded" in report.reason and "\n" not in report.reason
    assert tables(pg_dsn) >= TABLES
    assert (await migrate(pg_dsn)).applied == ()


async def test_concurrent_auto_migrations_on_such_a_server_all_end_plain(
    listed_dsn: str,
) -> None:
    reports = await asyncio.gather(*(migrate(listed_dsn) for _ in range(3)))
    assert {r.mode for r in reports} == {"postgres"}
    assert sorted(len(r.applied) for r in reports) == [0, 0, 6]


async def test_a_database_keeps_its_first_mode(db_dsn: str, pg_server: PgServer) -> None:
    await migrate(db_dsn, mode="postgres")  # on TimescaleDB too, when asked
    with pytest.raises(MigrationError, match="cannot switch"):
        await migrate(db_dsn, mode="timescaledb")
    assert (await migrate(db_dsn)).mode == "postgres", "auto keeps it plain"


async def test_ensure_database_creates_a_missing_database(db_dsn: str) -> None:
    pg_dsn = db_dsn
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    dsn = make_conninfo(pg_dsn, dbname=name)
    try:
        report = await ensure_database(dsn)
        assert report.applied and "readings" in tables(dsn)
        again = await ensure_database(dsn)
        assert again.applied == ()
    finally:
        admin = make_conninfo(pg_dsn, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(MigrationError, match="cannot connect"):
        await ensure_database("postgresql://postgres@127.0.0.1:9/nowhere?connect_timeout=2")


async def test_roles_exist_with_the_documented_rights(db_dsn: str) -> None:
    await migrate(db_dsn)
    checks = {
        # table, column or None, privilege: (writer, reader, operator)
        ("readings", None, "INSERT"): (True, False, False),
        ("readings", None, "SELECT"): (True, True, True),
        ("readings", None, "UPDATE"): (False, False, False),
        ("readings", None, "DELETE"): (False, False, False),
        ("aggregates_1h", None, "SELECT"): (True, True, True),
        ("alerts", None, "INSERT"): (True, False, False),
        ("alerts", "state", "UPDATE"): (True, False, False),
        ("alerts", "evidence", "UPDATE"): (True, False, False),
        ("alerts", "acked_by", "UPDATE"): (False, False, True),
        ("alerts", "acked_at", "UPDATE"): (False, False, True),
        ("alerts", "severity", "UPDATE"): (True, False, False),
        ("alerts", "id", "UPDATE"): (False, False, False),
        ("alerts", "gateway", "UPDATE"): (False, False, False),
    }
    roles = ("gateway_writer", "gateway_reader", "gateway_operator")
    with psycopg.connect(db_dsn) as conn:
        for (table, column, privilege), expected in checks.items():
            got = tuple(
                conn.execute(
                    "SELECT has_column_privilege(%s, %s, %s, %s)" if column else
                    "SELECT has_table_privilege(%s, %s, %s)",
                    (role, table, column, privilege) if column else (role, table, privilege),
                ).fetchone()[0]  # type: ignore[index]
                for role in roles
            )  # fmt: skip
            assert got == expected, (table, column, privilege)
        database = conn.execute(
            "SELECT has_database_privilege(r, current_database(), 'CONNECT'), "
            "has_database_privilege(r, current_database(), 'TEMPORARY') "
            "FROM unnest(%s::text[]) AS r",
            (["public", *roles],),
        ).fetchall()
        # PUBLIC: nothing; every role connects; only the writer stages in temp tables
        assert database == [(False, False), (True, True), (True, False), (True, False)]
        assert conn.execute(
            "SELECT has_schema_privilege('public', 'public', 'CREATE')"
        ).fetchone() == (False,)


def test_every_mode_has_a_complete_plan() -> None:
    for mode in ("postgres", "timescaledb"):
        versions = [x.version for x in plan(mode)]
        assert versions == sorted(set(versions)) and versions[0] == 1
        assert all(x.mode in (None, mode) for x in plan(mode))


def test_dsn_helpers_keep_the_database_name(pg_dsn: str) -> None:
    assert conninfo_to_dict(pg_dsn)["dbname"].startswith("gw_test_")
