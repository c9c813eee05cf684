"""`gateway db status`: the central database's health, for people and for monitoring.

    schema_migrations ------------------> mode, schema version
    timescaledb_information.hypertables -> chunks, size, compression ratio
    aggregates_1m vs each rollup -------> newest bucket, lag behind the minutes
    timescaledb_information.jobs -------> schedule, last run, status,
      + job_stats + job_history           failures in a row, last error
    retention policies (or the config) -> horizons
    the tables the sinks write ---------> sizes and row estimates

Plain PostgreSQL has no chunks and no scheduler: it shows the rollup tables
(kept by the sink in the writing transaction), the horizons the sink prunes to
(from the config) and the table sizes. `problems()` is what a monitor acts on:
a job that failed more than N times in a row, a rollup more than two buckets
behind its minutes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from gateway.db.migrate import CONTINUOUS_AGGREGATES, SETTLE, span_text
from gateway.db.settings import RetentionSettings

# how far back a rollup's newest bucket and the newest minute are looked for:
# two day buckets and a margin, so a lag of more than two buckets still shows
LOOKBACK = dt.timedelta(days=4)
# the tables the sinks write, with their retention setting (None: kept)
TABLES: tuple[tuple[str, str | None], ...] = (
    ("readings", "readings_days"),
    ("aggregates_1m", "aggregates_days"),
    ("vehicle_positions", "positions_days"),
    ("events", "events_days"),
    ("rejects", "rejects_days"),
    ("alerts", None),
    ("streams", None),
    ("vehicles", None),
)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable: GB ends the loop")


class StatusError(RuntimeError):
    """The status cannot be read; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Hypertable:
    name: str
    chunks: int
    compressed_chunks: int
    bytes: int
    before_compression: int | None  # bytes of the compressed chunks before, and after
    after_compression: int | None

    @property
    def compression_ratio(self) -> float | None:
        if not self.before_compression or not self.after_compression:
            return None
        return self.before_compression / self.after_compression


@dataclasses.dataclass(frozen=True, slots=True)
class Rollup:
    name: str
    bucket: dt.timedelta
    newest: dt.datetime | None  # start of the newest bucket within LOOKBACK
    lag: dt.timedelta | None  # behind the newest minute; None: no minutes within LOOKBACK

    @property
    def lagging(self) -> bool:
        return self.lag is not None and self.lag > 2 * self.bucket


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    id: int
    proc: str
    relation: str
    schedule: dt.timedelta | None
    scheduled: bool
    last_run: dt.datetime | None
    last_status: str | None
    failures_in_a_row: int
    next_start: dt.datetime | None
    last_error: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Horizon:
    table: str
    drop_after: dt.timedelta | None  # None: kept for ever
    source: str  # "policy" (TimescaleDB's job) or "config" (the sink prunes to it)


@dataclasses.dataclass(frozen=True, slots=True)
class TableSize:
    name: str
    bytes: int
    rows: int | None  # an estimate; None before the table was first analysed


@dataclasses.dataclass(frozen=True, slots=True)
class DbStatus:
    mode: str
    version: int
    server: str
    timescaledb: str | None
    hypertables: tuple[Hypertable, ...]
    rollups: tuple[Rollup, ...]
    jobs: tuple[Job, ...]
    horizons: tuple[Horizon, ...]
    tables: tuple[TableSize, ...]

    def problems(self, max_failures: int) -> list[str]:
        """What a monitor should raise, one line each; empty when healthy."""
        out = [
            f"job {j.id} ({j.proc} {j.relation}) failed {j.failures_in_a_row} times in a row"
            + (f": {j.last_error}" if j.last_error else "")
            for j in self.jobs
            if j.failures_in_a_row > max_failures
        ]
        out += [
            f"{r.name} is {span_text(r.lag)} behind its minutes (more than two buckets)"
            for r in self.rollups
            if r.lagging and r.lag is not None
        ]
        return out

    def describe(self, max_failures: int) -> str:
        """The status for people: one section per kind of row."""
        ext = f", timescaledb {self.timescaledb}" if self.timescaledb else ""
        lines = [
            f"mode: {self.mode}, schema version {self.version}",
            f"server: PostgreSQL {self.server}{ext}",
        ]
        if self.hypertables:
            lines.append("hypertables:")
            for h in self.hypertables:
                ratio = h.compression_ratio
                packed = f", compression {ratio:.1f}x" if ratio else ""
                lines.append(
                    f"  {h.name:<18} {h.chunks:>5} chunks ({h.compressed_chunks} compressed), "
                    f"{_bytes(h.bytes)}{packed}"
                )
        lines.append("rollups:" if self.mode == "timescaledb" else "rollups (kept by the sink):")
        for r in self.rollups:
            newest = r.newest.isoformat() if r.newest else "none in the last 4 days"
            lag = "no minutes in the last 4 days" if r.lag is None else f"lag {span_text(r.lag)}"
            flag = " LAGGING" if r.lagging else ""
            lines.append(f"  {r.name:<18} newest bucket {newest}, {lag}{flag}")
        if self.mode == "timescaledb":
            lines.append("jobs:")
            for j in self.jobs:
                every = span_text(j.schedule) if j.schedule else "-"
                last = j.last_run.isoformat(timespec="seconds") if j.last_run else "never"
                state = "" if j.scheduled else ", paused"
                flag = " FAILING" if j.failures_in_a_row > max_failures else ""
                what = f"{j.proc} {j.relation}" if j.relation else j.proc
                lines.append(
                    f"  {j.id:>5} {what}: every {every}{state}, last run {last} "
                    f"{j.last_status or '-'}, {j.failures_in_a_row} failures in a row{flag}"
                )
                if j.failures_in_a_row and j.last_error:
                    lines.append(f"        last error: {j.last_error}")
        else:
            lines.append("jobs: none in plain mode (the sink refreshes rollups and prunes)")
        lines.append("retention:")
        for z in self.horizons:
            kept = f"drop after {span_text(z.drop_after)}" if z.drop_after else "kept"
            lines.append(f"  {z.table:<18} {kept} ({z.source})")
        lines.append("tables:")
        for t in self.tables:
            rows = "?" if t.rows is None else f"~{t.rows}"
            lines.append(f"  {t.name:<18} {_bytes(t.bytes):>10}, {rows} rows")
        problems = self.problems(max_failures)
        lines.extend(f"problem: {p}" for p in problems)
        lines.append("status: " + ("UNHEALTHY" if problems else "ok"))
        return "\n".join(lines)

    def as_json(self, max_failures: int) -> dict[str, Any]:
        def plain(value: object) -> object:
            if isinstance(value, dt.timedelta):
                return value.total_seconds()
            if isinstance(value, dt.datetime):
                return value.isoformat()
            return value

        out: dict[str, Any] = {
            k: v for k, v in dataclasses.asdict(self).items() if not isinstance(v, (list, tuple))
        }
        for name in ("hypertables", "rollups", "jobs", "horizons", "tables"):
            out[name] = [
                {k: plain(v) for k, v in dataclasses.asdict(row).items()}
                for row in getattr(self, name)
            ]
        for h, row in zip(self.hypertables, out["hypertables"], strict=True):
            row["compression_ratio"] = h.compression_ratio
        for r, row in zip(self.rollups, out["rollups"], strict=True):
            row["lagging"] = r.lagging
        out["problems"] = self.problems(max_failures)
        return out


async def read_status(conninfo: str, retention: RetentionSettings) -> DbStatus:
    """Read the status of the database at `conninfo`; `retention` gives plain
    mode's horizons (the sink's settings). Raises StatusError with the cause."""
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as err:
        raise StatusError(f"cannot connect to the database: {err}") from err
    async with conn:
        try:
            return await _read(conn, retention)
        except psycopg.errors.UndefinedTable as err:
            raise StatusError(
                f"the database is not migrated ({err.diag.message_primary}); "
                "run `gateway db migrate`"
            ) from err
        except psycopg.Error as err:
            raise StatusError(f"cannot read the status: {err}") from err


Conn = psycopg.AsyncConnection[tuple[Any, ...]]


async def _rows(
    conn: Conn, query: str, params: Sequence[object] | Mapping[str, object] | None = None
) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query.encode(), params)
    return await cur.fetchall()


async def _read(conn: Conn, retention: RetentionSettings) -> DbStatus:
    ((mode, version),) = await _rows(
        conn,
        "SELECT (SELECT mode FROM schema_migrations ORDER BY version LIMIT 1), "
        "(SELECT max(version) FROM schema_migrations)",
    )
    if mode is None:
        raise StatusError("the database is not migrated; run `gateway db migrate`")
    tsdb = mode == "timescaledb"
    ext = await _rows(conn, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    return DbStatus(
        mode=str(mode),
        version=int(version),
        server=str(conn.info.parameter_status("server_version") or "?"),
        timescaledb=str(ext[0][0]) if ext else None,
        hypertables=tuple(await _hypertables(conn)) if tsdb else (),
        rollups=tuple(await _rollups(conn)),
        jobs=tuple(await _jobs(conn)) if tsdb else (),
        horizons=tuple(await _horizons(conn) if tsdb else _configured(retention)),
        tables=tuple(await _sizes(conn, tsdb)),
    )


async def _hypertables(conn: Conn) -> list[Hypertable]:
    rows = await _rows(
        conn,
        "SELECT h.hypertable_name, h.num_chunks, hypertable_size(r.oid), "
        "coalesce(s.number_compressed_chunks, 0), s.before_compression_total_bytes, "
        "s.after_compression_total_bytes "
        "FROM timescaledb_information.hypertables h "
        "CROSS JOIN LATERAL (SELECT format('%I.%I', h.hypertable_schema, "
        "h.hypertable_name)::regclass AS oid) r "
        "LEFT JOIN LATERAL hypertable_compression_stats(r.oid) s ON true "
        "WHERE h.hypertable_schema = 'public' ORDER BY 1",
    )
    return [
        Hypertable(str(n), int(c), int(cc), int(b or 0), bb, ab) for n, c, b, cc, bb, ab in rows
    ]


# the bucket that holds %(t)s, in each rollup's own bucketing (0003 / 0005)
_BUCKET_OF = {
    "aggregates_15m": "date_bin(interval '15 minutes', %(t)s, timestamptz '2000-01-01 00:00+00')",
    "aggregates_1h": "date_trunc('hour', %(t)s, %(zone)s)",
    "aggregates_1d": "date_trunc('day', %(t)s, %(zone)s)",
}


async def _rollups(conn: Conn) -> list[Rollup]:
    """Each rollup's newest bucket, for the stream of the newest minute, and its
    lag: how much of that stream's minutes in complete, settled buckets (those
    that end SETTLE before the newest minute) the rollup does not cover yet.
    A bucket still filling is never counted, so a day not over lags nothing."""
    newest = await _rows(
        conn,
        "SELECT stream, ts FROM aggregates_1m WHERE ts > now() - %s ORDER BY ts DESC LIMIT 1",
        (LOOKBACK,),
    )
    if not newest:
        return [Rollup(view, width, None, None) for view, width, _ in CONTINUOUS_AGGREGATES]
    stream, minute = newest[0]
    zone = (await _rows(conn, "SELECT timezone FROM rollup_settings"))[0][0]
    out: list[Rollup] = []
    for view, width, _ in CONTINUOUS_AGGREGATES:
        boundary = _BUCKET_OF[view]
        ((bucket, settled, oldest),) = await _rows(
            conn,
            f"SELECT (SELECT max(bucket) FROM {view} WHERE stream = %(stream)s "
            "AND bucket > now() - %(back)s), "
            "(SELECT max(ts) FROM aggregates_1m WHERE stream = %(stream)s "
            f"AND ts > now() - %(back)s AND ts < {boundary}), "
            "(SELECT min(ts) FROM aggregates_1m WHERE stream = %(stream)s "
            "AND ts > now() - %(back)s)",
            {
                "stream": stream,
                "back": LOOKBACK,
                "t": minute + dt.timedelta(minutes=1) - SETTLE,
                "zone": zone,
            },
        )
        covered = bucket + width if bucket is not None else oldest
        lag = dt.timedelta(0)
        if settled is not None:
            lag = max(lag, settled + dt.timedelta(minutes=1) - covered)
        out.append(Rollup(view, width, bucket, lag))
    return out


async def _jobs(conn: Conn) -> list[Job]:
    history = await _rows(
        conn, "SELECT to_regclass('timescaledb_information.job_history') IS NOT NULL"
    )
    # job_history (2.15+): failures since the last success, and the last error. It
    # shows only to the owners of the database or the job; to anyone else, and
    # before 2.15, a failed last run still counts one.
    if history[0][0]:
        extra = (
            "greatest((s.last_run_status = 'Failed')::int, "
            "(SELECT count(*) FROM timescaledb_information.job_history h "
            "WHERE h.job_id = j.job_id AND h.succeeded IS NOT TRUE AND h.start_time > "
            "coalesce((SELECT max(g.start_time) FROM timescaledb_information.job_history g "
            "WHERE g.job_id = j.job_id AND g.succeeded), '-infinity'))), "
            "(SELECT h.err_message FROM timescaledb_information.job_history h "
            "WHERE h.job_id = j.job_id ORDER BY h.id DESC LIMIT 1)"
        )
    else:
        extra = "(s.last_run_status = 'Failed')::int, NULL"
    rows = await _rows(
        conn,
        "SELECT j.job_id, j.proc_name, coalesce(j.hypertable_name::text, ''), "
        "j.schedule_interval, j.scheduled, s.last_run_started_at, s.last_run_status, "
        f"s.next_start, {extra} "
        "FROM timescaledb_information.jobs j "
        "LEFT JOIN timescaledb_information.job_stats s USING (job_id) ORDER BY j.job_id",
    )
    return [
        Job(int(i), str(p), str(r), sch, bool(on), last, status, int(fails or 0), nxt, err)
        for i, p, r, sch, on, last, status, nxt, fails, err in rows
    ]


async def _horizons(conn: Conn) -> list[Horizon]:
    rows = await _rows(
        conn,
        "SELECT hypertable_name, (config->>'drop_after')::interval "
        "FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'",
    )
    policies = {str(name): after for name, after in rows}
    return [Horizon(t, policies.get(t), "policy") for t, field in TABLES if field]


def _configured(retention: RetentionSettings) -> list[Horizon]:
    out = []
    for table, field in TABLES:
        if field:
            days = int(getattr(retention, field))
            out.append(Horizon(table, dt.timedelta(days=days) if days else None, "config"))
    return out


async def _sizes(conn: Conn, tsdb: bool) -> list[TableSize]:
    names = [t for t, _ in TABLES]
    if tsdb:  # hypertable_size counts the chunks; it is NULL for a plain table
        query = (
            "SELECT t, coalesce(hypertable_size(t::regclass), "
            "pg_total_relation_size(t::regclass)), approximate_row_count(t::regclass) "
            "FROM unnest(%s::text[]) AS t"
        )
    else:
        query = (
            "SELECT t, pg_total_relation_size(t::regclass), "
            "(SELECT reltuples FROM pg_class WHERE oid = t::regclass) "
            "FROM unnest(%s::text[]) AS t"
        )
    rows = await _rows(conn, query, (names,))
    return [TableSize(str(n), int(b), None if r is None or r < 0 else int(r)) for n, b, r in rows]
