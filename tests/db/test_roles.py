"""Logins of each role, on both servers: each gets what it needs and nothing more
(0006), and an acknowledgement is the operator's alone to set."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from gateway.alertdesk import AlertDeskError, acknowledge
from gateway.batch import NS_PER_S
from gateway.bundle import Bundle
from gateway.db.migrate import migrate
from gateway.events import Alert, Severity
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry

T0 = (time.time_ns() // NS_PER_S - 3600) * NS_PER_S


@contextmanager
def login(dsn: str, *roles: str) -> Iterator[str]:
    """A login user in `roles` (none: a bare login), dropped afterwards; its DSN."""
    user = f"gw_test_login_{uuid.uuid4().hex[:8]}"
    member = f" IN ROLE {', '.join(roles)}" if roles else ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN{member}'.encode())
    try:
        yield make_conninfo(dsn, user=user)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{user}"'.encode())
            conn.execute(f'DROP ROLE "{user}"'.encode())


def refused(dsn: str, sql: str) -> bool:
    """True when the server refuses `sql` to this login for want of a privilege."""
    try:
        with psycopg.connect(dsn) as conn:
            conn.execute(sql.encode())
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


async def test_public_gets_nothing_and_the_reader_only_reads(db_dsn: str) -> None:
    await migrate(db_dsn)
    with login(db_dsn) as bare, pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(bare).close()
    with login(db_dsn, "gateway_reader") as reader:
        with psycopg.connect(reader) as conn:
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM aggregates_1d").fetchone() == (0,)
        assert refused(reader, "CREATE TEMP TABLE t (x int)")
        assert refused(reader, "CREATE TABLE t (x int)")
        assert refused(reader, "UPDATE alerts SET acked_by = 'x'")
        assert refused(reader, "INSERT INTO events (ts, gateway, asset, kind) "
                               "VALUES (now(), 'g', 'a', 'k')")  # fmt: skip


async def test_only_the_operator_acknowledges_and_the_gateway_keeps_it(db_dsn: str) -> None:
    await migrate(db_dsn)
    registry = StreamRegistry()
    opened = Alert("leak", "dma-07", Severity.WARNING, T0, needs_ack=True)
    with (
        login(db_dsn, "gateway_writer") as writer,
        login(db_dsn, "gateway_operator") as operator,
    ):
        sink = PostgresSink(writer, registry, "gw-07")
        await sink.open()
        try:
            await sink.write(Bundle(alerts=(opened,)))
            # the writer may move the lifecycle but not touch an acknowledgement
            assert refused(writer, "UPDATE alerts SET acked_by = 'gw', acked_at = now()")
            assert not refused(writer, "UPDATE alerts SET message = 'x' WHERE false")
            assert refused(operator, "INSERT INTO events (ts, gateway, asset, kind) "
                                     "VALUES (now(), 'g', 'a', 'k')")  # fmt: skip
            with (
                login(db_dsn, "gateway_reader") as reader,
                pytest.raises(
                    AlertDeskError,
                    match="not acknowledge them; connect as a login in the gateway_op",
                ),
            ):
                acknowledge(reader, opened.id, "asha")
            assert acknowledge(operator, opened.id, "asha").acked_by == "asha"
            # a later state, and an acknowledgement by someone else carried by the gateway
            cleared = opened.clear(T0 + 60 * NS_PER_S).acknowledge("edge-panel", T0 + 61 * NS_PER_S)
            await sink.write(Bundle(alerts=(cleared,)))
        finally:
            await sink.close()
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute("SELECT state, acked_by FROM alerts").fetchone()
    assert row == ("cleared", "asha")


async def test_an_acknowledgement_that_reached_the_gateway_is_stored_once(db_dsn: str) -> None:
    await migrate(db_dsn)
    opened = Alert("panic", "bus/MH12-KQ-4321", Severity.CRITICAL, T0, needs_ack=True)
    other = Alert("leak", "dma-01", Severity.WARNING, T0)
    with login(db_dsn, "gateway_writer") as writer:
        mine = PostgresSink(writer, StreamRegistry(), "depot-1")
        theirs = PostgresSink(writer, StreamRegistry(), "depot-2")
        await mine.open()
        await theirs.open()
        try:
            await mine.write(Bundle(alerts=(opened,)))
            await theirs.write(Bundle(alerts=(other,)))
            acked = opened.acknowledge("ravi", T0 + NS_PER_S)
            await mine.write(Bundle(alerts=(acked,)))
            await mine.write(Bundle(alerts=(opened.acknowledge("later", T0 + 9 * NS_PER_S),)))
            with psycopg.connect(writer) as conn:  # not another gateway's alert
                assert conn.execute(
                    "SELECT gateway_acknowledge('depot-1', %s, 'x', now())", (other.id,)
                ).fetchone() == (False,)
        finally:
            await mine.close()
            await theirs.close()
    with psycopg.connect(db_dsn) as conn:
        rows = conn.execute("SELECT gateway, acked_by FROM alerts ORDER BY gateway").fetchall()
    assert rows == [("depot-1", "ravi"), ("depot-2", None)]
