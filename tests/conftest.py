"""Fixtures shared by the whole suite: real PostgreSQL and Mosquitto, each test on its own
database and its own topics.

Database tests take `db_dsn`, which runs each test twice: on plain PostgreSQL
(GATEWAY_TEST_PG) and on a server that preloads TimescaleDB (GATEWAY_TEST_TSDB,
made by ../shared/timescaledb/install.sh). `pg_server` says which one a test is
on. Where no TimescaleDB can be had the TimescaleDB half is skipped with how to
enable it, except when CI=true, where that is a failure. `pg_dsn` is plain only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import uuid
from collections.abc import Iterator
from typing import Literal, NoReturn

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PG_SERVER = os.environ.get("GATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TSDB_SERVER = os.environ.get("GATEWAY_TEST_TSDB", "postgresql://postgres@127.0.0.1:5433/postgres")
MQTT_HOST = os.environ.get("GATEWAY_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("GATEWAY_TEST_MQTT_PORT", "1883"))


@dataclasses.dataclass(frozen=True, slots=True)
class PgServer:
    """A server the database tests run on, and the schema mode it gives."""

    mode: Literal["postgres", "timescaledb"]
    dsn: str  # of its maintenance database


def _server_dsn() -> str:
    try:
        with psycopg.connect(PG_SERVER, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as err:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER}: {err}. Run the suite with ./run test, "
            "which starts it, or set GATEWAY_TEST_PG."
        )
    return PG_SERVER


@functools.cache
def _timescaledb_missing() -> str | None:
    """Why GATEWAY_TEST_TSDB cannot serve the TimescaleDB half; None when it can."""
    try:
        with psycopg.connect(TSDB_SERVER, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT current_setting('shared_preload_libraries'), "
                "(SELECT default_version FROM pg_available_extensions "
                "WHERE name = 'timescaledb')"
            ).fetchone()
    except psycopg.OperationalError as err:
        return f"no server at {TSDB_SERVER} ({' '.join(str(err).split())})"
    assert row is not None
    if row[1] is None or "timescaledb" not in str(row[0]):
        return f"the server at {TSDB_SERVER} does not preload timescaledb"
    return None


def skip_timescaledb(why: str) -> NoReturn:
    """Skip a TimescaleDB test, saying how to enable it; under CI=true, fail it."""
    how = "run ../shared/timescaledb/install.sh (as root; ./run test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"TimescaleDB test cannot run under CI=true: {why}; {how}")
    pytest.skip(f"TimescaleDB test skipped: {why}; {how}")


def _timescaledb_dsn() -> str:
    missing = _timescaledb_missing()
    if missing is not None:
        skip_timescaledb(f"{missing} (or point GATEWAY_TEST_TSDB at a server that preloads it)")
    return TSDB_SERVER


@pytest.fixture(params=["plain", "timescaledb"])
def pg_server(request: pytest.FixtureRequest) -> PgServer:
    """Plain PostgreSQL, then TimescaleDB: each database test runs on both."""
    if request.param == "plain":
        return PgServer("postgres", _server_dsn())
    return PgServer("timescaledb", _timescaledb_dsn())


def _fresh_database(server: str) -> Iterator[str]:
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_dsn(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on each server of `pg_server`, dropped afterwards."""
    yield from _fresh_database(pg_server.dsn)


@pytest.fixture
def tsdb_dsn() -> Iterator[str]:
    """A fresh, empty database on the TimescaleDB server only, for what plain mode lacks."""
    yield from _fresh_database(_timescaledb_dsn())


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh, empty database on the plain PostgreSQL server, dropped afterwards."""
    yield from _fresh_database(_server_dsn())


@pytest.fixture
def mqtt_prefix() -> str:
    """A topic prefix no other test (or gateway) uses."""
    return f"gwtest-{uuid.uuid4().hex[:10]}"
