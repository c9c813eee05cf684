"""Fixtures shared by the whole suite: real PostgreSQL and Mosquitto, each test on its own
database and its own topics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PG_SERVER = os.environ.get("GATEWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_HOST = os.environ.get("GATEWAY_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("GATEWAY_TEST_MQTT_PORT", "1883"))


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


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh, empty database for this test, dropped afterwards."""
    server = _server_dsn()
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
def mqtt_prefix() -> str:
    """A topic prefix no other test (or gateway) uses."""
    return f"gwtest-{uuid.uuid4().hex[:10]}"
