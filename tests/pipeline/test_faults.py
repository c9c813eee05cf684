"""Fault tests against the real PostgreSQL: kill -9, database outage, server restart.

Each checks the promise: every accepted reading is in the database exactly once.
Readings carry ts = T0 + i µs and value i, so "exactly once" is "the stored
values are 0..n-1 with no gap, and n covers everything the source saw accepted".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from gateway.backoff import Backoff
from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.db.migrate import migrate
from gateway.events import Alert, Severity
from gateway.parts import Emit
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.outbox_file import OutboxSettings
from gateway.runtime import Runtime, RuntimeSettings
from gateway.sinks.postgres import PostgresSink
from tests.fakes import flow_registry

HERE = Path(__file__).resolve().parent
PROCESS = HERE / "gateway_process.py"
DAY = 86_400 * 1_000_000_000
T0 = (
    time.time_ns() // DAY - 1
) * DAY  # yesterday 00:00 UTC: recent, so retention (30 days of raw readings) keeps it


def stored(dsn: str) -> tuple[int, int, int]:
    """(rows, distinct values, max value + 1) of the readings table."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT value), coalesce(max(value) + 1, 0) FROM readings"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def assert_exactly_once(dsn: str, accepted: int) -> None:
    rows, distinct, top = stored(dsn)
    if not rows == distinct == top:
        with psycopg.connect(dsn) as conn:
            gaps = conn.execute(
                "SELECT min(v), max(v) FROM (SELECT v, v - row_number() OVER (ORDER BY v) AS g "
                "FROM (SELECT generate_series(0, %s - 1) AS v "
                "EXCEPT SELECT value::bigint FROM readings) m) x GROUP BY g ORDER BY 1",
                (top,),
            ).fetchall()
        raise AssertionError(f"{rows} rows, {distinct} distinct, top {top}; missing {gaps}")
    assert top >= accepted, f"accepted {accepted} readings but only {top} are stored"
    with psycopg.connect(dsn) as conn:
        bad = conn.execute(
            "SELECT count(*) FROM readings "
            "WHERE (extract(epoch FROM ts) * 1e6)::bigint - %s != value::bigint",
            (T0 // 1000,),
        ).fetchone()
    assert bad == (0,), "every value sits at its own timestamp"


def run_process(dsn: str, tmp: Path, *args: str, timeout: float = 60) -> int:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    proc = subprocess.run(
        [
            sys.executable,
            str(PROCESS),
            dsn,
            str(tmp / "outbox.sqlite"),
            str(tmp / "mark"),
            "--t0",
            str(T0),
            *args,
        ],
        env=env,
        timeout=timeout,
        capture_output=True,
        check=False,
        text=True,
    )
    return proc.returncode


def accepted(tmp: Path) -> int:
    mark = tmp / "mark"
    return int(mark.read_text()) if mark.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [
        ["--kill-after-copy", "3"],  # inside the transaction: COPY done, nothing committed
        ["--kill-after-commit", "3"],  # committed in PostgreSQL, not yet confirmed in the outbox
        ["--kill-after-commit", "1"],
    ],
    ids=["between-copy-and-commit", "between-commit-and-confirm", "first-write"],
)
def test_kill_9_inside_the_write_cycle_loses_and_duplicates_nothing(
    pg_dsn: str, tmp_path: Path, kill: list[str]
) -> None:
    asyncio.run(migrate(pg_dsn))
    code = run_process(pg_dsn, tmp_path, *kill)
    assert code == -signal.SIGKILL, f"the process should have been killed, exit {code}"
    before = accepted(tmp_path)
    assert before > 0
    assert run_process(pg_dsn, tmp_path, "--drain") == 0
    assert_exactly_once(pg_dsn, before)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_restart(pg_dsn: str, tmp_path: Path) -> None:
    asyncio.run(migrate(pg_dsn))
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    args = [sys.executable, str(PROCESS), pg_dsn, str(tmp_path / "outbox.sqlite")]
    args += [str(tmp_path / "mark"), "--t0", str(T0)]
    rng = np.random.default_rng(5)
    for delay in rng.uniform(0.0, 1.0, size=3):
        start = accepted(tmp_path)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(600):  # a random moment once it is writing, however slow its start
            if accepted(tmp_path) > start:
                break
            time.sleep(0.05)
        time.sleep(float(delay))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    before = accepted(tmp_path)
    assert before > 0
    assert run_process(pg_dsn, tmp_path, "--drain") == 0
    assert_exactly_once(pg_dsn, before)


# -- database outage through a TCP proxy ---------------------------------------------------


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut (close everything,
    refuse connections) and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for w in list(self.links):
            w.transport.abort()
        self.links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_w}

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))
        self.links -= {writer, up_w}


class Counter:
    name = "counter"

    def __init__(self, rows: int, every: float) -> None:
        self.next = 0
        self.rows = rows
        self.every = every
        self.accepted = 0
        self.running = True

    async def run(self, emit: Emit) -> None:
        while self.running:
            i = np.arange(self.next, self.next + self.rows)
            batch = ReadingBatch.of(T0 + i * 1000, np.zeros(self.rows), i.astype(np.float64))
            await emit(Bundle(readings=batch))
            self.next += self.rows
            self.accepted = self.next
            await asyncio.sleep(self.every)


class RecordingSink(PostgresSink):
    """Notes what each successful write carried, in order."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.written: list[tuple[float, int, int]] = []  # (monotonic, min value, max value)
        self.copying = asyncio.Event()
        self.pause_copy: asyncio.Event | None = None  # set: the next COPY stops half-way

    async def write(self, bundle: Bundle) -> None:
        await super().write(bundle)
        v = bundle.readings.value
        if len(v):
            self.written.append((time.monotonic(), int(v.min()), int(v.max())))

    async def _copy(self, cur: Any, target: str, payload: bytes) -> None:  # type: ignore[override]
        pause, self.pause_copy = self.pause_copy, None
        if pause is None:
            await PostgresSink._copy(cur, target, payload)
            return
        # half the payload sent, then hold the COPY open until the test says go
        async with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)".encode()) as copy:
            await copy.write(payload[: len(payload) // 2])
            self.copying.set()
            await pause.wait()
            await copy.write(payload[len(payload) // 2 :])


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def wait_until_drained(outbox: Outbox, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while outbox.rows and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert outbox.rows == 0, f"{outbox.rows} rows still in the outbox after {timeout} s"


@pytest.mark.slow
async def test_database_outage_loses_nothing_and_live_goes_before_the_backlog(
    pg_dsn: str, tmp_path: Path
) -> None:
    await migrate(pg_dsn)
    proxy = Proxy(int(psycopg.conninfo.conninfo_to_dict(pg_dsn).get("port") or 5432))
    await proxy.start()
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, host="127.0.0.1", port=proxy.port)
    # the pool gives up reconnecting after 1 s: the outage outlasts it, as a long one would
    reg = flow_registry()
    sink = RecordingSink(dsn, reg, "gw-outage", connect_timeout=1.0, reconnect_timeout=1.0)
    outbox = Outbox.open(
        tmp_path / "o.sqlite", reg, OutboxSettings(live_window_s=0.5, backlog_rows_per_s=0)
    )
    source = Counter(rows=200, every=0.01)
    settings = RuntimeSettings(batch_max_rows=2000, batch_max_seconds=0.05, drain_timeout=20)
    runtime = Runtime([source], [sink], settings=settings, queue_for=lambda _: outbox)
    runtime.deliveries[0].backoff = fast_backoff()
    async with running(runtime):
        await asyncio.sleep(0.7)
        assert sink.written, "rows flow while the database is up"
        await proxy.cut()
        cut_at = source.accepted
        await asyncio.sleep(2.5)
        depth = outbox.stats()
        assert depth.rows > 0 and depth.oldest_age_s > 1.5, "the outbox holds the outage"
        assert runtime.deliveries[0].stats.up is False
        restored_at = source.accepted
        restored = time.monotonic()
        await proxy.start()
        deadline = time.monotonic() + 30
        while outbox.stats().oldest_age_s > 1.0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the backlog drains while live data keeps coming
        source.running = False
        await wait_until_drained(outbox, 30)
    await proxy.cut()
    after = [w for w in sink.written if w[0] >= restored]
    assert after, "writes resumed"
    first_min = after[0][1]
    assert first_min >= restored_at - 200 * 60, "the first write after the outage is live data"
    assert first_min > cut_at, "live data goes before the backlog"
    backlog_writes = [w for w in after if w[1] < cut_at + 200]
    assert backlog_writes and backlog_writes[0][0] > after[0][0]
    assert_exactly_once(pg_dsn, source.accepted)


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=0.2)


# -- a PostgreSQL restart in the middle of a COPY ---------------------------------------

PG_BIN = Path(os.environ.get("GATEWAY_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_cluster() -> Iterator[tuple[str, Any]]:
    """A throwaway PostgreSQL cluster on a spare port that this test may restart."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {PG_BIN}; set GATEWAY_PG_BIN")
    root = Path(tempfile.mkdtemp(prefix="gw-pg-"))
    data = root / "data"
    port = free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; run the cluster as postgres
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def ctl(*args: str) -> None:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), *args], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    subprocess.run(
        [*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl("-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")

    def restart() -> None:
        ctl(
            "-D", str(data), "-m", "immediate", "-o", opts, "-l", str(root / "log"), "-w", "restart"
        )

    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", restart
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ctl("-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
async def test_postgresql_restart_in_the_middle_of_a_copy(
    own_cluster: tuple[str, Any], tmp_path: Path
) -> None:
    dsn, restart = own_cluster
    await migrate(dsn)
    reg = flow_registry()
    sink = RecordingSink(dsn, reg, "gw-restart", connect_timeout=2.0)
    outbox = Outbox.open(tmp_path / "o.sqlite", reg)
    source = Counter(rows=5_000, every=0.05)
    settings = RuntimeSettings(batch_max_rows=100_000, batch_max_seconds=0.05, drain_timeout=20)
    runtime = Runtime([source], [sink], settings=settings, queue_for=lambda _: outbox)
    runtime.deliveries[0].backoff = fast_backoff()
    async with running(runtime):
        for k in range(2):
            await asyncio.sleep(0.5)
            go = asyncio.Event()
            sink.copying.clear()
            sink.pause_copy = go
            await asyncio.wait_for(sink.copying.wait(), 10)  # half a COPY is on the wire
            await asyncio.to_thread(restart)
            go.set()  # the rest of the COPY meets a server that was restarted under it
            await asyncio.sleep(0.2)
            assert runtime.deliveries[0].stats.write_failures >= k + 1
        await asyncio.sleep(1.0)
        source.running = False
        await wait_until_drained(outbox, 30)
    assert_exactly_once(dsn, source.accepted)


class AlertingCounter(Counter):
    """A counter that also raises one alert per bundle: alerts must never be shed."""

    def __init__(self, rows: int, every: float) -> None:
        super().__init__(rows, every)
        self.alerts: list[str] = []

    async def run(self, emit: Emit) -> None:
        while self.running:
            i = np.arange(self.next, self.next + self.rows)
            batch = ReadingBatch.of(T0 + i * 1000, np.zeros(self.rows), i.astype(np.float64))
            alert = Alert("leak", "dma-01", Severity.WARNING, T0 + self.next)
            await emit(Bundle(readings=batch, alerts=(alert,)))
            self.alerts.append(alert.id)
            self.next += self.rows
            self.accepted = self.next
            await asyncio.sleep(self.every)


@pytest.mark.slow
async def test_disk_quota_during_an_outage_sheds_raw_readings_and_keeps_alerts(
    pg_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate(pg_dsn)
    proxy = Proxy(int(psycopg.conninfo.conninfo_to_dict(pg_dsn).get("port") or 5432))
    await proxy.start()
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, host="127.0.0.1", port=proxy.port)
    reg = flow_registry()
    sink = RecordingSink(dsn, reg, "gw-quota", connect_timeout=1.0)
    outbox = Outbox.open(tmp_path / "o.sqlite", reg, OutboxSettings(disk_quota_bytes=1024 * 1024))
    source = AlertingCounter(rows=2000, every=0.01)  # ~42 kB per bundle: 1 MiB in ~0.3 s
    settings = RuntimeSettings(batch_max_rows=20_000, batch_max_seconds=0.05, drain_timeout=20)
    runtime = Runtime([source], [sink], settings=settings, queue_for=lambda _: outbox)
    runtime.deliveries[0].backoff = fast_backoff()
    async with running(runtime):
        await asyncio.sleep(0.3)
        await proxy.cut()
        await asyncio.sleep(2.0)
        shed = outbox.stats()
        assert shed.shed_rows > 0, "the quota was reached and raw readings shed"
        assert shed.stored_bytes <= 1024 * 1024 + 64 * 1024
        await proxy.start()
        source.running = False
        await wait_until_drained(outbox, 30)
    await proxy.cut()
    shed_rows = outbox.stats().shed_rows
    rows, distinct, _ = stored(pg_dsn)
    assert rows == distinct
    # Every reading is stored or counted as shed. The count may exceed by the one
    # write in flight when the link was cut: its COMMIT may have landed without
    # the reply, so the outbox kept (and later shed) what the database has.
    assert 0 <= rows + shed_rows - source.accepted <= settings.batch_max_rows
    with psycopg.connect(pg_dsn) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM alerts")}
    assert ids == set(source.alerts), "no alert is ever shed"
    assert any("outbox.shed" in r.getMessage() for r in caplog.records), "shedding is logged"
