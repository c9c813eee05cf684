"""Versioned migrations: apply each file once, in order, under an advisory lock.

    migrations/0001_tables.sql              both modes
    migrations/0002_roles.sql               both modes
    migrations/0003_time.timescaledb.sql    one of these two, by mode
    migrations/0003_time.postgres.sql
    migrations/0004_writer_mode.sql         both modes
    migrations/0005_local_rollups.*.sql     by mode: 1 h / 1 d rollups in local time
    migrations/0006_privileges.sql          both modes: PUBLIC gets nothing, operator role

Each file runs in its own transaction and is recorded in `schema_migrations`
with its checksum, so a second run applies nothing and an edited file that was
already applied is refused. A file may hold :'rollup_timezone', replaced by
the zone as a quoted literal when it runs (the checksum is of the file as
written); the zone is kept in `rollup_settings`, and a later run with another
zone is refused. The mode is chosen at the first run and kept: a
database made on plain PostgreSQL stays plain even if TimescaleDB is installed
later. Policies (compression, retention, continuous-aggregate refresh) carry
configurable intervals, so they are re-applied on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import timedelta
from importlib import resources

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.config import check_timezone
from gateway.db.settings import DEFAULT_RETENTION, DEFAULT_ROLLUP_TIMEZONE, Mode, RetentionSettings
from gateway.logs import get_logger

log = get_logger("gateway.db")

# pg_advisory_lock key: b"gateway\x01" as an int64, so concurrent migrators queue
LOCK_KEY = int.from_bytes(b"gateway\x01", "big", signed=True)
MIN_TIMESCALEDB = (2, 13)  # create_hypertable(..., by_range(...))

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(timescaledb|postgres))?\.sql$")
# a parameter of a migration file, psql style: :'name' becomes 'value'
_PARAM = re.compile(r":'([a-z_]+)'")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('timescaledb', 'postgres')),
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The schema cannot be brought up to date; the message says why and what to do."""


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    mode: str | None  # None: the same file for both modes
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def params(self) -> frozenset[str]:
        return frozenset(_PARAM.findall(self.sql))

    def render(self, params: dict[str, str]) -> str:
        """The SQL with each :'name' replaced by params[name] as a quoted literal."""

        def literal(match: re.Match[str]) -> str:
            name = match[1]
            if name not in params:
                raise MigrationError(f"migration {self.version:04d}_{self.name} needs {name}")
            return "'" + params[name].replace("'", "''") + "'"

        return _PARAM.sub(literal, self.sql)


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationReport:
    mode: str  # "timescaledb" or "postgres"
    reason: str  # why this mode
    applied: tuple[str, ...]  # names applied by this run
    current: int  # schema version after the run
    server_version: str
    timescaledb_version: str | None
    rollup_timezone: str | None = None  # local days and hours of the 1 h / 1 d rollups
    notes: tuple[str, ...] = ()  # what the operator should do next

    def describe(self) -> str:
        lines = [f"mode: {self.mode} ({self.reason})", f"server: PostgreSQL {self.server_version}"]
        if self.applied:
            lines.append("applied: " + ", ".join(self.applied))
        else:
            lines.append("applied: nothing, the schema was up to date")
        lines.append(f"schema version: {self.current}")
        if self.rollup_timezone:
            lines.append(f"rollups: 1 h and 1 d buckets in local time of {self.rollup_timezone}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def load_migrations() -> list[Migration]:
    """All migration files, sorted by version then name."""
    found: list[Migration] = []
    folder = resources.files("gateway.db").joinpath("migrations")
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if entry.name.endswith(".sql") and not match:
            raise MigrationError(f"migration file {entry.name} is not named NNNN_name[.mode].sql")
        if match:
            version, name, mode = match.groups()
            found.append(Migration(int(version), name, mode, entry.read_text()))
    found.sort(key=lambda m: (m.version, m.mode or ""))
    return found


def plan(mode: str) -> list[Migration]:
    """The migrations for a mode: per version, the mode's file or the common one."""
    by_version: dict[int, list[Migration]] = {}
    for m in load_migrations():
        by_version.setdefault(m.version, []).append(m)
    chosen: list[Migration] = []
    for version in sorted(by_version):
        files = by_version[version]
        common = [m for m in files if m.mode is None]
        specific = [m for m in files if m.mode == mode]
        if common and len(files) > 1:
            raise MigrationError(f"version {version:04d} has both a common and a per-mode file")
        if not common and len(specific) != 1:
            raise MigrationError(f"version {version:04d} has no file for mode {mode}")
        chosen.append(common[0] if common else specific[0])
    return chosen


# The continuous aggregates of 0003_time.timescaledb.sql: (view, bucket width,
# how often its refresh policy runs).
CONTINUOUS_AGGREGATES: tuple[tuple[str, timedelta, timedelta], ...] = (
    ("aggregates_15m", timedelta(minutes=15), timedelta(minutes=15)),
    ("aggregates_1h", timedelta(hours=1), timedelta(hours=1)),
    ("aggregates_1d", timedelta(days=1), timedelta(hours=1)),
)


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def sql_interval(span: timedelta) -> str:
    """A whole number of seconds as an SQL interval literal in its largest
    whole unit: INTERVAL '3 days', INTERVAL '2885 minutes'."""
    seconds = int(span.total_seconds())
    for unit, size in _UNITS:
        if seconds % size == 0:
            n = seconds // size
            return f"INTERVAL '{n} {unit}{'' if n == 1 else 's'}'"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


def span_text(span: timedelta) -> str:
    """A span for people: '30 days', '2 days 5 minutes'."""
    seconds, parts = int(span.total_seconds()), []
    for unit, size in _UNITS:
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {unit}{'' if n == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


# How long after a bucket closes its last minutes are taken to be in: gateways
# write each minute's aggregate seconds after it ends.
SETTLE = timedelta(minutes=5)


def refresh_window(retention: RetentionSettings, bucket: timedelta) -> tuple[timedelta, timedelta]:
    """(start_offset, end_offset) of a continuous aggregate's refresh policy.

    end_offset is SETTLE, not a bucket: a refresh materialises only the buckets
    wholly inside its window, so the bucket still filling is left alone anyway,
    while an end_offset of one bucket also held back the newest complete one
    (yesterday's day appeared only at the end of today). So a bucket is there
    SETTLE plus at most one schedule_interval after it closes. Minutes that
    arrive later (a backlog) are picked up by the next run, within the window.
    start_offset is the refresh window (how late a backlog may arrive), but at
    least end_offset plus two buckets: add_continuous_aggregate_policy refuses
    a window (start_offset - end_offset) narrower than two buckets ("policy
    refresh window too small").
    """
    end = SETTLE
    start = max(timedelta(days=retention.refresh_window_days), end + 2 * bucket)
    return start, end


def backfill_statement(*views: str) -> str:
    """One statement that refreshes `views` from the oldest minute still kept to now.

    Never from NULL (the start of time): once retention has dropped minutes,
    their chunks leave invalidations behind, and a refresh that reaches them
    deletes the rollup buckets of those days, which the policies' windows are
    kept clear of for that reason. CALL takes no subquery as an argument, and
    a DO block at top level may CALL a procedure that commits, so the start is
    read when the statement runs, not when migrate printed it."""
    calls = " ".join(f"CALL refresh_continuous_aggregate('{v}', since, now());" for v in views)
    return (
        "DO $$ DECLARE since timestamptz := coalesce((SELECT min(ts) FROM aggregates_1m), "
        f"now()); BEGIN {calls} END $$;"
    )


def timescaledb_policies(retention: RetentionSettings) -> list[str]:
    """Policy statements, removed then added so a changed interval takes effect.

    Every function here is a plain function in TimescaleDB 2.13 - 2.28 (the
    compression ones deprecated since 2.18 but kept; their columnstore
    successors are procedures that would need CALL). Raises MigrationError
    when a refresh window would reach minutes that retention already dropped:
    refreshing there would empty the rollup buckets instead of keeping them.
    """
    r = retention
    out: list[str] = []
    for table, days in (
        ("readings", r.readings_days),
        ("vehicle_positions", r.positions_days),
        ("aggregates_1m", r.aggregates_days),
        ("events", r.events_days),
        ("rejects", r.rejects_days),
    ):
        out.append(f"SELECT remove_retention_policy('{table}', if_exists => TRUE)")
        if days:
            out.append(
                f"SELECT add_retention_policy('{table}', "
                f"drop_after => {sql_interval(timedelta(days=days))})"
            )
    for table in ("readings", "aggregates_1m", "vehicle_positions"):
        out.append(f"SELECT remove_compression_policy('{table}', if_exists => TRUE)")
        out.append(
            f"SELECT add_compression_policy('{table}', "
            f"compress_after => {sql_interval(timedelta(days=r.compress_after_days))})"
        )
    for view, bucket, every in CONTINUOUS_AGGREGATES:
        start, end = refresh_window(r, bucket)
        if r.aggregates_days and start >= timedelta(days=r.aggregates_days):
            raise MigrationError(
                f"{view} refreshes the last {sql_interval(start)} of aggregates_1m, but "
                f"retention keeps only {r.aggregates_days} days of it; raise "
                "aggregates_days (or set it to 0) so refreshes never reach dropped minutes"
            )
        out.append(f"SELECT remove_continuous_aggregate_policy('{view}', if_exists => TRUE)")
        out.append(
            f"SELECT add_continuous_aggregate_policy('{view}', "
            f"start_offset => {sql_interval(start)}, "
            f"end_offset => {sql_interval(end)}, "
            f"schedule_interval => {sql_interval(every)})"
        )
    return out


async def migrate(
    conninfo: str,
    *,
    mode: Mode = "auto",
    retention: RetentionSettings = DEFAULT_RETENTION,
    rollup_timezone: str = DEFAULT_ROLLUP_TIMEZONE,
) -> MigrationReport:
    """Bring the database at `conninfo` up to date; report the mode chosen.

    `rollup_timezone` (an IANA zone name) sets the local days and hours of the
    1 h / 1 d rollups when migration 0005 runs; a database migrated with
    another zone is refused with a MigrationError."""
    try:
        check_timezone(rollup_timezone, "rollup_timezone")
    except ValueError as err:
        raise MigrationError(str(err)) from err
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as err:
        raise MigrationError(f"cannot connect to the database: {err}") from err
    async with conn:
        try:
            await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            try:
                return await _migrate_locked(conn, conninfo, mode, retention, rollup_timezone)
            finally:
                if not conn.closed:  # a lost session has lost its lock already
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        except psycopg.OperationalError as err:
            raise MigrationError(f"lost the connection to the database: {err}") from err


async def _migrate_locked(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    conninfo: str,
    wanted: Mode,
    retention: RetentionSettings,
    rollup_timezone: str,
) -> MigrationReport:
    await conn.execute(_BOOKKEEPING)
    cur = await conn.execute("SELECT version, name, mode, checksum FROM schema_migrations")
    done = {int(str(v)): (str(n), str(m), str(c)) for v, n, m, c in await cur.fetchall()}
    server = str(conn.info.parameter_status("server_version") or "?")
    if conn.info.server_version < 140000:
        raise MigrationError(f"PostgreSQL {server} is too old; the schema needs 14 or newer")
    mode, reason = await _choose_mode(conn, conninfo, wanted, done)
    tsdb = await _timescaledb_version(conn)
    # built first: settings the policies cannot honour fail before anything changes
    policies = timescaledb_policies(retention) if mode == "timescaledb" else []
    params = {"rollup_timezone": rollup_timezone}
    steps = plan(mode)
    pending = any(m.params for m in steps if m.version not in done)
    await _check_rollup_timezone(conn, rollup_timezone, needed=pending)
    applied: list[str] = []
    for m in steps:
        if m.version in done:
            _, _, checksum = done[m.version]
            if checksum != m.checksum:
                raise MigrationError(
                    f"migration {m.version:04d}_{m.name} changed after it was applied "
                    f"(checksum {checksum} in the database, {m.checksum} in the file); "
                    "add a new migration instead of editing an applied one"
                )
            continue
        async with conn.transaction():
            try:
                await conn.execute(m.render(params).encode())
            except psycopg.Error as err:
                raise MigrationError(f"migration {m.version:04d}_{m.name} failed: {err}") from err
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, mode, checksum) "
                "VALUES (%s, %s, %s, %s)",
                (m.version, m.name, mode, m.checksum),
            )
        applied.append(f"{m.version:04d}_{m.name}")
        log.info("db.migrated", version=m.version, name=m.name, mode=mode)
    if policies:
        async with conn.transaction():
            for statement in policies:
                try:
                    await conn.execute(statement.encode())
                except psycopg.Error as err:
                    raise MigrationError(f"policy failed: {statement}: {err}") from err
    current = max([m.version for m in steps], default=0)
    notes: list[str] = []
    if mode == "timescaledb" and any(a.startswith("0005_") for a in applied):
        reach = {
            view: refresh_window(retention, width)[0] for view, width, _ in CONTINUOUS_AGGREGATES
        }
        notes.append(
            "aggregates_1h and aggregates_1d were made again in local time; their refresh "
            f"policies fill the last {span_text(reach['aggregates_1h'])} and "
            f"{span_text(reach['aggregates_1d'])}. Back-fill the older buckets from the "
            "oldest minute still kept, outside a transaction (psql; docs/schema.md): "
            + backfill_statement("aggregates_1h", "aggregates_1d")
        )
    zone = await _recorded_timezone(conn)
    return MigrationReport(mode, reason, tuple(applied), current, server, tsdb, zone, tuple(notes))


async def _recorded_timezone(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> str | None:
    """The zone of the 1 h / 1 d rollups, None before migration 0005."""
    cur = await conn.execute("SELECT to_regclass('rollup_settings') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    cur = await conn.execute("SELECT timezone FROM rollup_settings")
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def _check_rollup_timezone(
    conn: psycopg.AsyncConnection[tuple[object, ...]], wanted: str, *, needed: bool
) -> None:
    """Refuse a zone other than the one the rollups were built in, and, when a
    pending migration will use it, a zone this server does not know."""
    recorded = await _recorded_timezone(conn)
    if recorded is not None and recorded != wanted:
        raise MigrationError(
            f"this database buckets its 1 h and 1 d rollups in local time of {recorded}, "
            f"not {wanted}; migrate with --rollup-timezone {recorded} (or set "
            f'rollup_timezone = "{recorded}" in [postgres]). Moving the rollups to another '
            "zone needs a new migration that rebuilds them"
        )
    if needed:
        cur = await conn.execute("SELECT 1 FROM pg_timezone_names WHERE name = %s", (wanted,))
        if await cur.fetchone() is None:
            raise MigrationError(
                f"this PostgreSQL server does not know the time zone {wanted} "
                "(pg_timezone_names); update its time zone data or pick another zone"
            )


async def _timescaledb_version(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> str | None:
    cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def _choose_mode(
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    conninfo: str,
    wanted: Mode,
    done: dict[int, tuple[str, str, str]],
) -> tuple[str, str]:
    if done:
        kept = next(iter(done.values()))[1]
        if wanted not in ("auto", kept):
            raise MigrationError(
                f"this database was migrated in {kept} mode; it cannot switch to {wanted}"
            )
        return kept, "kept from the first migration of this database"
    if wanted == "postgres":
        return "postgres", "asked for plain PostgreSQL"
    installed = await _timescaledb_version(conn)
    if installed is None:
        cur = await conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
        available = await cur.fetchone()
        if available is None:
            if wanted == "timescaledb":
                raise MigrationError(
                    "the timescaledb extension is not installed on this server; "
                    "install it, or migrate with --mode postgres"
                )
            return "postgres", "the timescaledb extension is not available on this server"
        failure = await _create_extension(conninfo)
        if failure is not None:
            if wanted == "timescaledb":
                raise MigrationError(f"cannot create the timescaledb extension: {failure}")
            return "postgres", f"timescaledb is available but cannot be created: {failure}"
        installed = await _timescaledb_version(conn)
    parts = tuple(int(p) for p in re.findall(r"\d+", installed or "0")[:2])
    if parts < MIN_TIMESCALEDB:
        raise MigrationError(
            f"timescaledb {installed} is too old; the schema needs "
            f"{'.'.join(map(str, MIN_TIMESCALEDB))} or newer"
        )
    return "timescaledb", f"timescaledb {installed} is installed"


async def _create_extension(conninfo: str) -> str | None:
    """CREATE EXTENSION timescaledb on a connection of its own; None when it
    worked, else why not, in one line.

    A server that has the package but does not preload the library answers
    with FATAL and closes the session, so the migrator's own connection (which
    holds the advisory lock) must not be the one that tries. The caller holds
    that lock, so concurrent migrators do not race here."""
    try:
        probe = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as err:
        return f"cannot open a second connection to try it ({_first_line(err)})"
    async with probe:
        try:
            await probe.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error as err:
            why = _first_line(err)
            if "preload" in why:
                why += "; add timescaledb to shared_preload_libraries and restart PostgreSQL"
            return why
    return None


def _first_line(err: psycopg.Error) -> str:
    """The primary message, without the server's multi-line HINT."""
    return err.diag.message_primary or str(err).splitlines()[0]


def _is_missing_database(err: psycopg.OperationalError) -> bool:
    return err.sqlstate == "3D000" or "does not exist" in str(err)


async def ensure_database(
    conninfo: str,
    *,
    mode: Mode = "auto",
    retention: RetentionSettings = DEFAULT_RETENTION,
    rollup_timezone: str = DEFAULT_ROLLUP_TIMEZONE,
    maintenance_db: str = "postgres",
) -> MigrationReport:
    """Create the database named in `conninfo` if missing (via the maintenance
    database), then migrate it. Raises MigrationError when the server cannot be
    reached, with the reason."""
    try:
        probe = await psycopg.AsyncConnection.connect(conninfo)
    except psycopg.OperationalError as err:
        if not _is_missing_database(err):
            raise MigrationError(f"cannot connect to the database: {err}") from err
        await _create_database(conninfo, maintenance_db)
    else:
        await probe.close()
    return await migrate(conninfo, mode=mode, retention=retention, rollup_timezone=rollup_timezone)


async def _create_database(conninfo: str, maintenance_db: str) -> None:
    dbname = conninfo_to_dict(conninfo).get("dbname")
    if not dbname:
        raise MigrationError("the DSN names no database (dbname) to create")
    admin = make_conninfo(conninfo, dbname=maintenance_db)
    try:
        conn = await psycopg.AsyncConnection.connect(admin, autocommit=True)
    except psycopg.OperationalError as err:
        raise MigrationError(
            f"cannot connect to {maintenance_db} to create {dbname}: {err}"
        ) from err
    async with conn:
        try:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(dbname))))
        except psycopg.errors.DuplicateDatabase:
            pass  # made by someone else meanwhile: that is what we wanted
        except psycopg.Error as err:
            raise MigrationError(f"cannot create database {dbname}: {err}") from err
    log.info("db.created", database=str(dbname))
