"""The TimescaleDB migration and policies, checked as far as a plain PostgreSQL allows.

The database tests also run on a real TimescaleDB 2.28.3 (the `db_dsn` fixture);
this SQL must still run on 2.13, the oldest the migrator accepts, which CI does
not have. So here, on plain PostgreSQL: every statement is parsed by
PostgreSQL's own parser (pglast), and then run, in a transaction as migrate.py
runs it, against the real schema on PostgreSQL with stand-ins for the
TimescaleDB functions. The stand-ins declare the documented signatures (argument
names, order, defaults), so a wrong keyword fails, and enforce the documented
rules: the time column is NOT NULL timestamptz, every unique index of a
hypertable includes it, a non-empty table needs migrate_data, compression names
existing columns of a hypertable with option names both 2.13 and 2.28 accept, a
compression policy needs compression enabled, a continuous aggregate reads a
hypertable, groups by time_bucket over its time column and is created WITH NO
DATA (WITH DATA refuses a transaction block), a refresh window spans at least
two buckets, and a policy added twice without removing it first is an error. The
continuous aggregates' queries run for real (WITH NO DATA) over the real tables,
so a wrong column or GROUP BY fails here. Beyond TimescaleDB's own checks: no
refresh window reaches back to minutes that retention has dropped, for any
settings RetentionSettings accepts.

Migration 0005 drops the 1 h and 1 d continuous aggregates and makes them again
with time_bucket(width, ts, timezone): the stand-ins carry all the 3-argument
time_bucket variants of TimescaleDB (offset, origin, timezone), so the zone
literal must resolve to the timezone one; DROP MATERIALIZED VIEW removes the
view's refresh policies, as documented, and the policies migrate.py adds after
every run must then succeed again.
"""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
import pytest
from pglast import parse_sql, parser
from pglast.ast import (
    A_Const,
    AlterTableStmt,
    CallStmt,
    CreateExtensionStmt,
    CreateTableAsStmt,
    DefElem,
    DropStmt,
    FuncCall,
    NamedArgExpr,
    TransactionStmt,
    TypeCast,
)
from pglast.enums import ObjectType

from gateway.db import migrate as m
from gateway.db.settings import RetentionSettings

# Stand-ins for the TimescaleDB API. Argument names, order and defaults are those
# of TimescaleDB 2.27.2's install script (timescaledb--2.27.2.sql; unchanged in
# 2.28) and of the API pages at https://docs.tigerdata.com/api/latest/, so a
# misspelt or renamed keyword fails here as it would there. Where TimescaleDB
# takes "any" or anyelement (offsets, intervals) the stand-in takes interval:
# the time columns are timestamptz, for which the documented type is INTERVAL.
STUBS = r"""
CREATE SCHEMA tsdb;
CREATE TABLE tsdb.hypertables (relation regclass PRIMARY KEY, time_column name NOT NULL);
CREATE TABLE tsdb.compressed (relation regclass PRIMARY KEY);
CREATE TABLE tsdb.caggs (view regclass PRIMARY KEY, bucket interval NOT NULL, timezone text);
CREATE TABLE tsdb.jobs (kind text, relation regclass, config text, end_offset interval);
CREATE TYPE tsdb.dimension_info AS (column_name name, partition_interval interval);

-- by_range(column_name NAME, partition_interval ANYELEMENT = NULL::bigint,
--          partition_func REGPROC = NULL)
CREATE FUNCTION tsdb.by_range(column_name name, partition_interval interval DEFAULT NULL,
                              partition_func regproc DEFAULT NULL)
RETURNS tsdb.dimension_info LANGUAGE sql AS $$ SELECT (column_name, partition_interval) $$;

-- create_hypertable(relation REGCLASS, dimension DIMENSION_INFO,
--     create_default_indexes BOOLEAN = TRUE, if_not_exists BOOLEAN = FALSE,
--     migrate_data BOOLEAN = FALSE) RETURNS TABLE(hypertable_id INT, created BOOL)
CREATE FUNCTION tsdb.create_hypertable(relation regclass, dimension tsdb.dimension_info,
    create_default_indexes boolean DEFAULT true, if_not_exists boolean DEFAULT false,
    migrate_data boolean DEFAULT false)
RETURNS TABLE (hypertable_id integer, created boolean) LANGUAGE plpgsql AS $$
DECLARE
    col record;
    idx record;
    has_rows boolean;
BEGIN
    SELECT a.attnum, a.attnotnull, format_type(a.atttypid, a.atttypmod) AS type INTO col
    FROM pg_attribute a WHERE a.attrelid = relation AND a.attname = dimension.column_name
      AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" does not exist in %', dimension.column_name, relation;
    END IF;
    IF col.type NOT IN ('timestamp with time zone', 'timestamp without time zone', 'date',
                        'bigint', 'integer', 'smallint') THEN
        RAISE EXCEPTION 'invalid type % for dimension %', col.type, dimension.column_name;
    END IF;
    FOR idx IN SELECT indexrelid::regclass AS name, indkey FROM pg_index
               WHERE indrelid = relation AND indisunique LOOP
        IF NOT col.attnum = ANY (idx.indkey::int2[]) THEN
            RAISE EXCEPTION 'cannot create a unique index without the column "%" (used in '
                'partitioning): %', dimension.column_name, idx.name;
        END IF;
    END LOOP;
    IF dimension.partition_interval IS NOT NULL AND dimension.partition_interval <= '0' THEN
        RAISE EXCEPTION 'invalid chunk interval';
    END IF;
    IF EXISTS (SELECT FROM tsdb.hypertables h WHERE h.relation = create_hypertable.relation) THEN
        IF NOT if_not_exists THEN RAISE EXCEPTION '% is already a hypertable', relation; END IF;
        RETURN QUERY SELECT 1, false;
        RETURN;
    END IF;
    -- "If you leave migrate_data set to the default, non-empty tables generate an error"
    EXECUTE format('SELECT EXISTS (SELECT FROM %s)', relation) INTO has_rows;
    IF has_rows AND NOT migrate_data THEN
        RAISE EXCEPTION 'table "%" is not empty', relation
            USING HINT = 'You can migrate data by specifying migrate_data => true';
    END IF;
    INSERT INTO tsdb.hypertables VALUES (relation, dimension.column_name);
    RETURN QUERY SELECT 1, true;
END $$;

CREATE FUNCTION tsdb.time_bucket(bucket_width interval, ts timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00+00') $$;

-- time_bucket(bucket_width INTERVAL, ts TIMESTAMPTZ, "offset" INTERVAL)
CREATE FUNCTION tsdb.time_bucket(bucket_width interval, ts timestamptz, "offset" interval)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT date_bin(bucket_width, ts - "offset", timestamptz '2000-01-03 00:00+00') + "offset" $$;

-- time_bucket(bucket_width INTERVAL, ts TIMESTAMPTZ, origin TIMESTAMPTZ)
CREATE FUNCTION tsdb.time_bucket(bucket_width interval, ts timestamptz, origin timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(bucket_width, ts, origin) $$;

-- time_bucket(bucket_width INTERVAL, ts TIMESTAMPTZ, timezone TEXT,
--     origin TIMESTAMPTZ = NULL, "offset" INTERVAL = NULL) RETURNS TIMESTAMPTZ:
-- buckets in the zone's local time, from a local origin of 2000-01-03 00:00
CREATE FUNCTION tsdb.time_bucket(bucket_width interval, ts timestamptz, timezone text,
    origin timestamptz DEFAULT NULL, "offset" interval DEFAULT NULL)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT (date_bin(bucket_width, (ts - coalesce("offset", '0')) AT TIME ZONE timezone,
                     coalesce(origin AT TIME ZONE timezone, timestamp '2000-01-03 00:00'))
            + coalesce("offset", '0')) AT TIME ZONE timezone
$$;

-- last(anyelement, "any")
CREATE FUNCTION tsdb.last_step(state anyarray, value anyelement, t timestamptz)
RETURNS anyarray LANGUAGE sql IMMUTABLE AS $$ SELECT state $$;
CREATE FUNCTION tsdb.last_final(state anyarray) RETURNS anyelement LANGUAGE sql IMMUTABLE
AS $$ SELECT state[1] $$;
CREATE AGGREGATE tsdb.last(anyelement, timestamptz) (
    SFUNC = tsdb.last_step, STYPE = anyarray, FINALFUNC = tsdb.last_final
);

CREATE FUNCTION tsdb.require_hypertable(rel regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM tsdb.hypertables WHERE relation = rel)
       AND NOT EXISTS (SELECT FROM tsdb.caggs WHERE view = rel) THEN
        RAISE EXCEPTION '% is not a hypertable or a continuous aggregate', rel;
    END IF;
END $$;

-- add_retention_policy(relation REGCLASS, drop_after "any" = NULL,
--     if_not_exists BOOL = false, schedule_interval INTERVAL = NULL,
--     initial_start TIMESTAMPTZ = NULL, timezone TEXT = NULL,
--     drop_created_before INTERVAL = NULL) RETURNS INTEGER
CREATE FUNCTION tsdb.add_retention_policy(relation regclass, drop_after interval DEFAULT NULL,
    if_not_exists boolean DEFAULT false, schedule_interval interval DEFAULT NULL,
    initial_start timestamptz DEFAULT NULL, timezone text DEFAULT NULL,
    drop_created_before interval DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tsdb.require_hypertable(relation);
    IF (drop_after IS NULL) = (drop_created_before IS NULL) THEN
        RAISE EXCEPTION 'give exactly one of drop_after and drop_created_before';
    END IF;
    IF EXISTS (SELECT FROM tsdb.jobs j
               WHERE j.kind = 'retention' AND j.relation = add_retention_policy.relation) THEN
        RAISE EXCEPTION 'retention policy already exists for %', relation;
    END IF;
    INSERT INTO tsdb.jobs VALUES ('retention', relation, drop_after::text);
    RETURN 1000;
END $$;

-- remove_retention_policy(relation REGCLASS, if_exists BOOL = false) RETURNS VOID
CREATE FUNCTION tsdb.remove_retention_policy(relation regclass, if_exists boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tsdb.jobs j
    WHERE j.kind = 'retention' AND j.relation = remove_retention_policy.relation;
    IF NOT FOUND AND NOT if_exists THEN
        RAISE EXCEPTION 'no retention policy on %', relation;
    END IF;
END $$;

-- add_compression_policy(hypertable REGCLASS, compress_after "any" = NULL,
--     if_not_exists BOOL = false, schedule_interval INTERVAL = NULL,
--     initial_start TIMESTAMPTZ = NULL, timezone TEXT = NULL,
--     compress_created_before INTERVAL = NULL) RETURNS INTEGER
-- (deprecated since 2.18 for the procedure add_columnstore_policy, still a function)
CREATE FUNCTION tsdb.add_compression_policy(hypertable regclass,
    compress_after interval DEFAULT NULL,
    if_not_exists boolean DEFAULT false, schedule_interval interval DEFAULT NULL,
    initial_start timestamptz DEFAULT NULL, timezone text DEFAULT NULL,
    compress_created_before interval DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM tsdb.compressed c WHERE c.relation = hypertable) THEN
        RAISE EXCEPTION 'compression not enabled on hypertable %', hypertable;
    END IF;
    IF (compress_after IS NULL) = (compress_created_before IS NULL) THEN
        RAISE EXCEPTION 'give exactly one of compress_after and compress_created_before';
    END IF;
    IF EXISTS (SELECT FROM tsdb.jobs j
               WHERE j.kind = 'compression' AND j.relation = hypertable) THEN
        RAISE EXCEPTION 'compression policy already exists for %', hypertable;
    END IF;
    INSERT INTO tsdb.jobs VALUES ('compression', hypertable, compress_after::text);
    RETURN 1001;
END $$;

-- remove_compression_policy(hypertable REGCLASS, if_exists BOOL = false) RETURNS BOOL
CREATE FUNCTION tsdb.remove_compression_policy(hypertable regclass, if_exists boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tsdb.jobs j WHERE j.kind = 'compression' AND j.relation = hypertable;
    IF NOT FOUND AND NOT if_exists THEN
        RAISE EXCEPTION 'no compression policy on %', hypertable;
    END IF;
    RETURN FOUND;
END $$;

-- add_continuous_aggregate_policy(continuous_aggregate REGCLASS, start_offset "any",
--     end_offset "any", schedule_interval INTERVAL, if_not_exists BOOL = false,
--     initial_start TIMESTAMPTZ = NULL, timezone TEXT = NULL,
--     include_tiered_data BOOL = NULL, buckets_per_batch INTEGER = NULL,
--     max_batches_per_execution INTEGER = NULL, refresh_newest_first BOOL = NULL)
-- RETURNS INTEGER. It refuses a window narrower than two buckets (timescaledb#2942:
-- "policy refresh window too small ... must cover at least two buckets").
CREATE FUNCTION tsdb.add_continuous_aggregate_policy(continuous_aggregate regclass,
    start_offset interval, end_offset interval, schedule_interval interval,
    if_not_exists boolean DEFAULT false, initial_start timestamptz DEFAULT NULL,
    timezone text DEFAULT NULL, include_tiered_data boolean DEFAULT NULL,
    buckets_per_batch integer DEFAULT NULL, max_batches_per_execution integer DEFAULT NULL,
    refresh_newest_first boolean DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    width interval;
BEGIN
    SELECT bucket INTO width FROM tsdb.caggs WHERE view = continuous_aggregate;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a continuous aggregate', continuous_aggregate;
    END IF;
    IF start_offset - end_offset < 2 * width THEN
        RAISE EXCEPTION 'policy refresh window too small'
            USING DETAIL = 'The start and end offsets must cover at least two buckets.';
    END IF;
    IF EXISTS (SELECT FROM tsdb.jobs j
               WHERE j.kind = 'refresh' AND j.relation = continuous_aggregate) THEN
        RAISE EXCEPTION 'continuous aggregate policy already exists for %',
            continuous_aggregate;
    END IF;
    INSERT INTO tsdb.jobs VALUES ('refresh', continuous_aggregate, start_offset::text,
                                  end_offset);
    RETURN 1002;
END $$;

-- remove_continuous_aggregate_policy(continuous_aggregate REGCLASS,
--     if_not_exists BOOL = false, if_exists BOOL = NULL) RETURNS VOID
-- (if_not_exists is the pre-2.8 name; if_exists overrides it)
CREATE FUNCTION tsdb.remove_continuous_aggregate_policy(continuous_aggregate regclass,
    if_not_exists boolean DEFAULT false, if_exists boolean DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tsdb.jobs j WHERE j.kind = 'refresh' AND j.relation = continuous_aggregate;
    IF NOT FOUND AND NOT coalesce(if_exists, if_not_exists) THEN
        RAISE EXCEPTION 'continuous aggregate policy not found for %', continuous_aggregate;
    END IF;
END $$;
"""

# ALTER TABLE ... SET options: the compress* names are accepted by TimescaleDB
# 2.13 - 2.17 and, as aliases of enable_columnstore / segmentby / orderby, by
# 2.18+ (src/with_clause/alter_table_with_clause.c), so only they run on both.
PORTABLE_OPTIONS = {"compress", "compress_segmentby", "compress_orderby"}

CONTINUOUS = re.compile(r"WITH\s*\(\s*timescaledb\.continuous\s*\)", re.IGNORECASE)
BUCKET = re.compile(
    r"time_bucket\(INTERVAL '([^']+)', (\w+)(?:, '([^']+)')?\) AS (\w+)", re.IGNORECASE
)
SPAN = re.compile(r"^(\d+) (day|hour|minute|second)s?$")
ZONE = "Asia/Kolkata"


def timescaledb_files() -> list[m.Migration]:
    return [x for x in m.plan("timescaledb") if x.mode == "timescaledb"]


def timescaledb_statements(zone: str = ZONE) -> list[str]:
    """Every statement of the TimescaleDB files, as migrate.py runs them."""
    out: list[str] = []
    for x in timescaledb_files():
        out += parser.split(x.render({"rollup_timezone": zone}))
    return out


def test_every_statement_parses_with_the_postgresql_parser() -> None:
    assert [x.version for x in timescaledb_files()] == [3, 5]
    statements = timescaledb_statements()
    statements += m.timescaledb_policies(RetentionSettings())
    for statement in statements:
        parse_sql(statement)  # raises ParseError with the position
    assert len(statements) > 20


def test_nothing_needs_to_run_outside_a_transaction() -> None:
    """migrate.py runs the file, and then the policies, each in one transaction:
    no CALL (refresh_continuous_aggregate, the columnstore procedures), no
    transaction control, no CREATE EXTENSION (migrate.py does that in autocommit),
    and every continuous aggregate WITH NO DATA (WITH DATA refuses a transaction
    block)."""
    statements = timescaledb_statements()
    statements += m.timescaledb_policies(RetentionSettings())
    for text in statements:
        (raw,) = parse_sql(text)
        stmt = raw.stmt
        assert not isinstance(stmt, (CallStmt, TransactionStmt, CreateExtensionStmt)), text
        if isinstance(stmt, CreateTableAsStmt):
            assert stmt.into.skipData, f"WITH NO DATA, or it cannot run in a transaction: {text}"


def options(stmt: AlterTableStmt) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for cmd in stmt.cmds:
        for d in cmd.def_:
            assert isinstance(d, DefElem)
            assert d.defnamespace == "timescaledb", f"unexpected option {d.defname}"
            out[d.defname] = None if d.arg is None else str(d.arg.sval)
    return out


def unique_keys(conn: psycopg.Connection[tuple[object, ...]], table: str) -> list[set[str]]:
    rows = conn.execute(
        "SELECT array_agg(a.attname::text) FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
        "WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid",
        (table,),
    ).fetchall()
    return [set(str(c) for c in r[0]) for r in rows]  # type: ignore[union-attr]


Caggs = dict[str, tuple[str, str | None]]  # view -> (bucket width, time zone)


def run_migration(
    conn: psycopg.Connection[tuple[object, ...]],
    versions: range = range(1, 10_000),
    caggs: Caggs | None = None,
    zone: str = ZONE,
) -> Caggs:
    """The TimescaleDB plan against the stand-ins, each file in a transaction as
    migrate.py runs it, checking each TimescaleDB statement against the documented
    rules; the caggs and their buckets."""
    caggs = {} if caggs is None else caggs
    conn.execute(m._BOOKKEEPING)
    for x in m.plan("timescaledb"):
        if x.version not in versions:
            continue
        text = x.render({"rollup_timezone": zone})
        if x.mode is None:
            conn.execute(text.encode())
            continue
        if conn.execute("SELECT to_regnamespace('tsdb')").fetchone() == (None,):
            conn.execute(STUBS.encode())
            conn.execute("SET search_path = tsdb, public")
        with conn.transaction():  # as migrate.py runs it
            for statement in parser.split(text):
                run_statement(conn, statement, caggs)
    return caggs


def run_statement(conn: psycopg.Connection[tuple[object, ...]], text: str, caggs: Caggs) -> None:
    (raw,) = parse_sql(text)
    stmt = raw.stmt
    if isinstance(stmt, AlterTableStmt):
        check_compression(conn, stmt)
    elif isinstance(stmt, CreateTableAsStmt):
        check_continuous_aggregate(conn, stmt, text, caggs)
    elif isinstance(stmt, DropStmt) and stmt.removeType == ObjectType.OBJECT_MATVIEW:
        drop_continuous_aggregate(conn, stmt, caggs)
    else:
        conn.execute(text.encode())


def drop_continuous_aggregate(
    conn: psycopg.Connection[tuple[object, ...]], stmt: DropStmt, caggs: Caggs
) -> None:
    """DROP MATERIALIZED VIEW on a cagg "deletes the continuous aggregate and all its
    internal objects. It also removes refresh policies for that aggregate"
    (api/latest/continuous-aggregates/drop_materialized_view)."""
    assert not stmt.missing_ok, "IF EXISTS would hide a view 0003 did not make"
    for names in stmt.objects:
        (name,) = (n.sval for n in names)
        assert name in caggs, f"{name} is not a continuous aggregate"
        conn.execute("DELETE FROM tsdb.jobs WHERE relation = %s::regclass", (name,))
        conn.execute("DELETE FROM tsdb.caggs WHERE view = %s::regclass", (name,))
        conn.execute(f"DROP MATERIALIZED VIEW {name}".encode())
        del caggs[name]


def check_compression(conn: psycopg.Connection[tuple[object, ...]], stmt: AlterTableStmt) -> None:
    table = stmt.relation.relname
    opts = options(stmt)
    assert set(opts) <= PORTABLE_OPTIONS, f"{table}: {set(opts) - PORTABLE_OPTIONS}"
    assert "compress" in opts, f"{table}: compression must be enabled"
    row = conn.execute(
        "SELECT time_column FROM tsdb.hypertables WHERE relation = %s::regclass", (table,)
    ).fetchone()
    assert row, f"compression on {table}, which is not a hypertable"
    columns = {
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
            (table,),
        )
    }
    segment = [c.strip() for c in (opts["compress_segmentby"] or "").split(",")]
    order = [c.split()[0] for c in (opts["compress_orderby"] or "").split(",")]
    assert set(segment) <= columns and set(order) <= columns
    assert not set(segment) & set(order), "a column cannot both segment and order"
    assert order[0] == row[0], "order compressed segments by the time column"
    # TimescaleDB warns when a unique key's other columns are not segmentby columns:
    # then ON CONFLICT on a compressed chunk must decompress whole batches to check.
    for key in unique_keys(conn, table):
        assert key - {row[0]} <= set(segment), f"{table}: segment by the unique key {key}"
    conn.execute("INSERT INTO tsdb.compressed VALUES (%s::regclass)", (table,))


def check_continuous_aggregate(
    conn: psycopg.Connection[tuple[object, ...]],
    stmt: CreateTableAsStmt,
    text: str,
    caggs: Caggs,
) -> None:
    assert stmt.into.skipData, "WITH NO DATA: a cagg WITH DATA cannot run in a transaction"
    assert CONTINUOUS.search(text), "a continuous aggregate needs timescaledb.continuous"
    (bucket,) = BUCKET.findall(text)
    width, column, zone, alias = bucket
    source = re.search(r"FROM (\w+)", text)
    assert source is not None
    row = conn.execute(
        "SELECT time_column FROM tsdb.hypertables WHERE relation = %s::regclass", (source[1],)
    ).fetchone()
    assert row == (column,), "bucket the source hypertable's time column"
    assert re.search(rf"GROUP BY .*\b{alias}\b", text), "group by the time bucket"
    view = stmt.into.rel.relname
    if zone:  # TimescaleDB checks the name (ts_is_valid_timezone_name) at CREATE
        known = conn.execute("SELECT FROM pg_timezone_names WHERE name = %s", (zone,))
        assert known.fetchone() is not None, f"invalid timezone name {zone!r}"
    conn.execute(CONTINUOUS.sub("", text).encode())  # the query runs for real
    # the variant of time_bucket the view calls: with a zone, the timezone TEXT one
    (args,) = conn.execute(
        "SELECT p.proargnames FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid "
        "JOIN pg_proc p ON p.oid = d.refobjid WHERE r.ev_class = %s::regclass "
        "AND p.proname = 'time_bucket'",
        (view,),
    ).fetchall()
    with_zone = ["bucket_width", "ts", "timezone", "origin", "offset"]
    assert args[0] == (with_zone if zone else ["bucket_width", "ts"]), args
    conn.execute(
        "INSERT INTO tsdb.caggs VALUES (%s::regclass, %s, %s)", (view, width, zone or None)
    )
    caggs[view] = (width, zone or None)


def apply_policies(conn: psycopg.Connection[tuple[object, ...]], r: RetentionSettings) -> None:
    with conn.transaction():  # as migrate.py runs them
        for statement in m.timescaledb_policies(r):
            conn.execute(statement.encode())


def test_the_timescaledb_migration_against_the_documented_rules(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        caggs = run_migration(conn)
        assert caggs == {
            "aggregates_15m": ("15 minutes", None),  # the UTC grid is every zone's
            "aggregates_1h": ("1 hour", ZONE),
            "aggregates_1d": ("1 day", ZONE),
        }
        widths = {
            v: conn.execute("SELECT %s::interval", (w,)).fetchone() for v, (w, _) in caggs.items()
        }
        assert widths == {v: (b,) for v, b, _ in m.CONTINUOUS_AGGREGATES}, (
            "migrate.CONTINUOUS_AGGREGATES names the views and buckets the migration creates"
        )
        hypertables = {r[0] for r in conn.execute("SELECT relation::text FROM tsdb.hypertables")}
        assert hypertables == {
            "readings", "aggregates_1m", "vehicle_positions", "events", "rejects",
        }  # fmt: skip
        for _ in range(2):  # policies are re-applied on every migrate: must be repeatable
            apply_policies(conn, RetentionSettings(readings_days=60))
        jobs = conn.execute(
            "SELECT kind, relation::text, config FROM tsdb.jobs ORDER BY 1, 2"
        ).fetchall()
    assert ("retention", "readings", "60 days") in jobs
    assert ("retention", "vehicle_positions", "90 days") in jobs
    assert ("retention", "aggregates_1m", "730 days") in jobs
    assert not [j for j in jobs if j[0] == "retention" and j[1] == "events"], "events: kept"
    assert {j[1] for j in jobs if j[0] == "compression"} == {
        "readings", "aggregates_1m", "vehicle_positions",
    }  # fmt: skip
    assert {j[1] for j in jobs if j[0] == "refresh"} == set(caggs)


SETTINGS = [
    RetentionSettings(),
    RetentionSettings(refresh_window_days=2),  # the smallest window the settings allow
    RetentionSettings(refresh_window_days=2, aggregates_days=4),
    RetentionSettings(refresh_window_days=3, aggregates_days=4),
    RetentionSettings(aggregates_days=0, refresh_window_days=400),  # minutes kept for ever
    RetentionSettings(compress_after_days=1, readings_days=0, positions_days=1),
]


@pytest.mark.parametrize("retention", SETTINGS)
def test_the_policies_hold_for_the_settings(pg_dsn: str, retention: RetentionSettings) -> None:
    """Every refresh window covers two buckets (the stand-in refuses less, as
    TimescaleDB does), and none reaches back to minutes retention has dropped:
    "make sure that the aggregate's refresh window doesn't overlap with any
    deleted data" (use-timescale/data-retention/data-retention-with-continuous-aggregates)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        run_migration(conn)
        apply_policies(conn, retention)
        apply_policies(conn, retention)
        windows = conn.execute(
            "SELECT j.relation::text, j.config::interval, j.end_offset, c.bucket "
            "FROM tsdb.jobs j JOIN tsdb.caggs c ON c.view = j.relation WHERE j.kind = 'refresh'"
        ).fetchall()
        kept = conn.execute(
            "SELECT config::interval FROM tsdb.jobs "
            "WHERE kind = 'retention' AND relation = 'aggregates_1m'::regclass"
        ).fetchone()
    assert len(windows) == len(m.CONTINUOUS_AGGREGATES)
    for view, start, end, bucket in windows:
        assert isinstance(start, timedelta) and isinstance(end, timedelta)
        assert isinstance(bucket, timedelta)
        assert start - end >= 2 * bucket, view
        assert end == m.SETTLE < bucket, f"{view}: the newest complete bucket is not held back"
        assert start >= timedelta(days=retention.refresh_window_days), view
        if retention.aggregates_days:
            assert kept is not None and kept[0] > start, f"{view} refreshes dropped minutes"
        else:
            assert kept is None


def span(literal: str) -> timedelta:
    match = SPAN.match(literal)
    assert match, literal
    n, unit = int(match[1]), match[2]
    return timedelta(**{f"{unit}s": n})


def policy_calls(statements: list[str]) -> list[tuple[str, str, dict[str, timedelta]]]:
    """(function, relation, {keyword: interval}) of each policy statement."""
    out = []
    for text in statements:
        (raw,) = parse_sql(text)
        (target,) = raw.stmt.targetList
        call = target.val
        assert isinstance(call, FuncCall), text
        (name,) = call.funcname
        relation, *rest = call.args
        assert isinstance(relation, A_Const)
        named: dict[str, timedelta] = {}
        for arg in rest:
            assert isinstance(arg, NamedArgExpr), f"pass every option by name: {text}"
            if isinstance(arg.arg, TypeCast):
                named[arg.name] = span(arg.arg.arg.val.sval)
        out.append((name.sval, relation.val.sval, named))
    return out


def test_refresh_windows_and_retention_over_many_settings() -> None:
    """Without a database: for every combination the settings accept, either the
    policies are refused with a MigrationError before anything runs, or each
    refresh window covers two buckets and starts after the minutes' retention."""
    buckets = {view: width for view, width, _ in m.CONTINUOUS_AGGREGATES}
    refused = 0
    for window in (2, 3, 4, 7, 30, 400):
        for kept in (0, 3, 4, 5, 31, 730):
            if 0 < kept <= window:
                continue  # RetentionSettings refuses these itself
            retention = RetentionSettings(refresh_window_days=window, aggregates_days=kept)
            try:
                calls = policy_calls(m.timescaledb_policies(retention))
            except m.MigrationError:
                refused += 1
                continue
            drop = {rel: kw["drop_after"] for f, rel, kw in calls if f == "add_retention_policy"}
            refreshes = [(rel, kw) for f, rel, kw in calls if f.startswith("add_continuous")]
            assert {rel for rel, _ in refreshes} == set(buckets)
            for view, kw in refreshes:
                start, end = kw["start_offset"], kw["end_offset"]
                assert start - end >= 2 * buckets[view], (retention, view)
                assert start >= timedelta(days=window)
                if kept:
                    assert drop["aggregates_1m"] > start, (retention, view)
                else:
                    assert "aggregates_1m" not in drop
    # end_offset is SETTLE (5 min), so the 1-day window is at least 2 days 5 min, which
    # every aggregates_days RetentionSettings accepts (> refresh_window_days >= 2) outlasts
    assert refused == 0


def test_a_window_into_dropped_minutes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # were end_offset one day, the 1-day rollup's window would be at least 1 day + 2
    # buckets = 3 days, which 3 days of minutes do not outlast
    monkeypatch.setattr(m, "SETTLE", timedelta(days=1))
    with pytest.raises(m.MigrationError, match="aggregates_1d refreshes the last"):
        m.timescaledb_policies(RetentionSettings(refresh_window_days=2, aggregates_days=3))


def test_a_unique_key_without_the_time_column_would_be_caught(pg_dsn: str) -> None:
    """The stand-in enforces the rule it claims to check."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(STUBS.encode())
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, ts timestamptz NOT NULL)")
        with pytest.raises(psycopg.errors.RaiseException, match="without the column"):
            conn.execute("SELECT tsdb.create_hypertable('t', tsdb.by_range('ts'))")


def test_a_table_with_rows_needs_migrate_data(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(STUBS.encode())
        conn.execute("CREATE TABLE t (ts timestamptz NOT NULL)")
        conn.execute("INSERT INTO t VALUES (now())")
        with pytest.raises(psycopg.errors.RaiseException, match="is not empty"):
            conn.execute("SELECT tsdb.create_hypertable('t', tsdb.by_range('ts'))")
        conn.execute(
            "SELECT tsdb.create_hypertable('t', tsdb.by_range('ts'), migrate_data => true)"
        )


WRONG = [
    # the columnstore procedure's keyword, not the function's
    "SELECT add_compression_policy('readings', after => INTERVAL '7 days')",
    "SELECT add_retention_policy('readings', older_than => INTERVAL '7 days')",
    "SELECT remove_retention_policy('readings', if_not_exists => TRUE)",
    "SELECT add_continuous_aggregate_policy('aggregates_1h', start_interval => INTERVAL "
    "'3 days', end_interval => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour')",
    "SELECT add_continuous_aggregate_policy('aggregates_1h', start_offset => INTERVAL "
    "'3 days', end_offset => INTERVAL '1 hour')",  # schedule_interval has no default
    "SELECT create_hypertable('rejects', by_range('ts'), chunk_time_interval => INTERVAL '1 day')",
    "SELECT time_bucket(INTERVAL '1 day', now(), tz => 'Asia/Kolkata')",
    "SELECT time_bucket(INTERVAL '1 day', now(), zone => 'Asia/Kolkata')",
]


@pytest.mark.parametrize("statement", WRONG)
def test_a_wrong_keyword_is_refused_by_the_stand_ins(pg_dsn: str, statement: str) -> None:
    """The stand-ins declare the documented names, so these mistakes fail here."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        run_migration(conn)
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute(statement.encode())


def test_a_refresh_window_of_one_bucket_is_refused_by_the_stand_in(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        run_migration(conn)
        with pytest.raises(psycopg.errors.RaiseException, match="window too small"):
            conn.execute(
                "SELECT add_continuous_aggregate_policy('aggregates_1d', start_offset => "
                "INTERVAL '2 days', end_offset => INTERVAL '1 day', "
                "schedule_interval => INTERVAL '1 hour')"
            )


def refresh_jobs(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT relation::text FROM tsdb.jobs WHERE kind = 'refresh' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_0005_on_a_database_with_policies_then_the_policies_again(pg_dsn: str) -> None:
    """As `gateway db migrate` upgrades a version-4 database: 0005 in its transaction
    (dropping the views drops their refresh policies), then the policies, which must
    apply cleanly to the new views."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        caggs = run_migration(conn, range(1, 5))
        assert caggs["aggregates_1d"] == ("1 day", None), "0003: UTC buckets"
        apply_policies(conn, RetentionSettings())
        assert refresh_jobs(conn) == ["aggregates_15m", "aggregates_1d", "aggregates_1h"]
        run_migration(conn, range(5, 6), caggs, zone="Europe/Berlin")
        assert caggs == {
            "aggregates_15m": ("15 minutes", None),
            "aggregates_1h": ("1 hour", "Europe/Berlin"),
            "aggregates_1d": ("1 day", "Europe/Berlin"),
        }
        assert refresh_jobs(conn) == ["aggregates_15m"], "dropped with their views"
        apply_policies(conn, RetentionSettings())
        assert refresh_jobs(conn) == ["aggregates_15m", "aggregates_1d", "aggregates_1h"]
        granted = conn.execute(
            "SELECT has_table_privilege('gateway_reader', 'aggregates_1d', 'SELECT'), "
            "has_table_privilege('gateway_reader', 'rollup_settings', 'SELECT')"
        ).fetchone()
        assert granted == (True, True)
        assert conn.execute("SELECT timezone FROM rollup_settings").fetchall() == [
            ("Europe/Berlin",)
        ]


def test_the_new_views_bucket_local_days_and_hours(pg_dsn: str) -> None:
    """The views' queries, run over minutes by the stand-in time_bucket (local
    midnight, as documented: "the buckets are realigned to start at midnight in the
    time zone you specify", api/latest/hyperfunctions/time_bucket)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        run_migration(conn)
        conn.execute(
            "INSERT INTO aggregates_1m (stream, ts, count, min, max, mean, sum, last) "
            "SELECT 1, t, 1, 1, 1, 1, 1, 1 FROM generate_series("
            "timestamptz '2026-01-10 18:29+00', timestamptz '2026-01-11 18:30+00', "
            "interval '1 minute') AS t"
        )
        for view in ("aggregates_1h", "aggregates_1d"):  # plain views in the stand-in
            conn.execute(f"REFRESH MATERIALIZED VIEW {view}".encode())
        conn.execute("SET TimeZone = 'UTC'")
        days = conn.execute("SELECT bucket::text, count FROM aggregates_1d ORDER BY 1").fetchall()
        hours = conn.execute("SELECT DISTINCT to_char(bucket, 'MI') FROM aggregates_1h")
        assert hours.fetchall() == [("30",)]
    assert days == [
        ("2026-01-09 18:30:00+00", 1),
        ("2026-01-10 18:30:00+00", 1440),
        ("2026-01-11 18:30:00+00", 1),
    ]
