"""The TimescaleDB migration, checked as far as a plain PostgreSQL allows.

CI has no TimescaleDB, and this SQL must be right the first time against a
real TimescaleDB 2.28. So: every statement is parsed by PostgreSQL's own
parser (pglast), and then run against the real schema on PostgreSQL with
stand-ins for the TimescaleDB functions that carry the documented signatures
(argument names and types) and enforce the documented rules: the time column
is NOT NULL timestamptz, every unique index of a hypertable includes it,
compression names existing columns of a hypertable, a compression policy
needs compression enabled, a continuous aggregate reads a hypertable and
groups by time_bucket over its time column, and a refresh window spans at
least two buckets. The continuous aggregates' queries run for real (WITH NO
DATA) over the real tables, so a wrong column or GROUP BY fails here.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from pglast import parse_sql, parser
from pglast.ast import AlterTableStmt, CreateTableAsStmt, DefElem

from gateway.db import migrate as m
from gateway.db.settings import RetentionSettings

STUBS = r"""
CREATE SCHEMA tsdb;
CREATE TABLE tsdb.hypertables (relation regclass PRIMARY KEY, time_column name NOT NULL);
CREATE TABLE tsdb.compressed (relation regclass PRIMARY KEY);
CREATE TABLE tsdb.caggs (view regclass PRIMARY KEY, bucket interval NOT NULL);
CREATE TABLE tsdb.jobs (kind text, relation regclass, config text);
CREATE TYPE tsdb.dimension_info AS (column_name name, partition_interval interval);

CREATE FUNCTION tsdb.by_range(column_name name, partition_interval interval DEFAULT NULL,
                              partition_func regproc DEFAULT NULL)
RETURNS tsdb.dimension_info LANGUAGE sql AS $$ SELECT (column_name, partition_interval) $$;

CREATE FUNCTION tsdb.create_hypertable(relation regclass, dimension tsdb.dimension_info,
    create_default_indexes boolean DEFAULT true, if_not_exists boolean DEFAULT false)
RETURNS TABLE (hypertable_id integer, created boolean) LANGUAGE plpgsql AS $$
DECLARE
    col record;
    idx record;
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
    INSERT INTO tsdb.hypertables VALUES (relation, dimension.column_name);
    RETURN QUERY SELECT 1, true;
END $$;

CREATE FUNCTION tsdb.time_bucket(bucket_width interval, ts timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS
$$ SELECT date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00+00') $$;

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

CREATE FUNCTION tsdb.remove_retention_policy(relation regclass, if_exists boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tsdb.jobs j
    WHERE j.kind = 'retention' AND j.relation = remove_retention_policy.relation;
    IF NOT FOUND AND NOT if_exists THEN
        RAISE EXCEPTION 'no retention policy on %', relation;
    END IF;
END $$;

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
    IF EXISTS (SELECT FROM tsdb.jobs j
               WHERE j.kind = 'compression' AND j.relation = hypertable) THEN
        RAISE EXCEPTION 'compression policy already exists for %', hypertable;
    END IF;
    INSERT INTO tsdb.jobs VALUES ('compression', hypertable, compress_after::text);
    RETURN 1001;
END $$;

CREATE FUNCTION tsdb.remove_compression_policy(hypertable regclass, if_exists boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tsdb.jobs j WHERE j.kind = 'compression' AND j.relation = hypertable;
    IF NOT FOUND AND NOT if_exists THEN
        RAISE EXCEPTION 'no compression policy on %', hypertable;
    END IF;
    RETURN FOUND;
END $$;

CREATE FUNCTION tsdb.add_continuous_aggregate_policy(continuous_aggregate regclass,
    start_offset interval, end_offset interval, schedule_interval interval,
    if_not_exists boolean DEFAULT false, initial_start timestamptz DEFAULT NULL,
    timezone text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    width interval;
BEGIN
    SELECT bucket INTO width FROM tsdb.caggs WHERE view = continuous_aggregate;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% is not a continuous aggregate', continuous_aggregate;
    END IF;
    IF start_offset - end_offset < 2 * width THEN
        RAISE EXCEPTION 'policy refresh window too small: it must cover at least two buckets';
    END IF;
    INSERT INTO tsdb.jobs VALUES ('refresh', continuous_aggregate, start_offset::text);
    RETURN 1002;
END $$;

CREATE FUNCTION tsdb.remove_continuous_aggregate_policy(continuous_aggregate regclass,
    if_not_exists boolean DEFAULT false, if_exists boolean DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tsdb.jobs j WHERE j.kind = 'refresh' AND j.relation = continuous_aggregate;
END $$;
"""

CONTINUOUS = re.compile(r"WITH\s*\(\s*timescaledb\.continuous\s*\)", re.IGNORECASE)
BUCKET = re.compile(r"time_bucket\(INTERVAL '([^']+)', (\w+)\) AS (\w+)", re.IGNORECASE)


def timescaledb_file() -> m.Migration:
    (found,) = [x for x in m.plan("timescaledb") if x.mode == "timescaledb"]
    return found


def test_every_statement_parses_with_the_postgresql_parser() -> None:
    statements = list(parser.split(timescaledb_file().sql))
    statements += m.timescaledb_policies(RetentionSettings())
    for statement in statements:
        parse_sql(statement)  # raises ParseError with the position
    assert len(statements) > 20


def options(stmt: AlterTableStmt) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for cmd in stmt.cmds:
        for d in cmd.def_:
            assert isinstance(d, DefElem)
            assert d.defnamespace == "timescaledb", f"unexpected option {d.defname}"
            out[d.defname] = None if d.arg is None else str(d.arg.sval)
    return out


def test_the_timescaledb_migration_against_the_documented_rules(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(m._BOOKKEEPING)
        for before in m.plan("timescaledb"):
            if before.mode is None:
                conn.execute(before.sql.encode())
        conn.execute(STUBS.encode())
        conn.execute("SET search_path = tsdb, public")
        caggs: dict[str, str] = {}
        for text in parser.split(timescaledb_file().sql):
            (raw,) = parse_sql(text)
            stmt = raw.stmt
            if isinstance(stmt, AlterTableStmt):
                table = stmt.relation.relname
                opts = options(stmt)
                assert "compress" in opts, f"{table}: compression must be enabled"
                row = conn.execute(
                    "SELECT time_column FROM tsdb.hypertables WHERE relation = %s::regclass",
                    (table,),
                ).fetchone()
                assert row, f"compression on {table}, which is not a hypertable"
                columns = {
                    r[0]
                    for r in conn.execute(
                        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                        "AND attnum > 0",
                        (table,),
                    )
                }
                segment = [c.strip() for c in (opts["compress_segmentby"] or "").split(",")]
                order = [c.split()[0] for c in (opts["compress_orderby"] or "").split(",")]
                assert set(segment) <= columns and set(order) <= columns
                assert order[0] == row[0], "order compressed segments by the time column"
                conn.execute("INSERT INTO tsdb.compressed VALUES (%s::regclass)", (table,))
            elif isinstance(stmt, CreateTableAsStmt):
                assert stmt.into.skipData, (
                    "WITH NO DATA: a cagg WITH DATA cannot run in a transaction"
                )
                assert CONTINUOUS.search(text), (
                    "a continuous aggregate needs timescaledb.continuous"
                )
                (bucket,) = BUCKET.findall(text)
                width, column, alias = bucket
                source = re.search(r"FROM (\w+)", text)
                assert source is not None
                row = conn.execute(
                    "SELECT time_column FROM tsdb.hypertables WHERE relation = %s::regclass",
                    (source[1],),
                ).fetchone()
                assert row == (column,), "bucket the source hypertable's time column"
                assert re.search(rf"GROUP BY .*\b{alias}\b", text), "group by the time bucket"
                view = stmt.into.rel.relname
                conn.execute(CONTINUOUS.sub("", text).encode())  # the query runs for real
                conn.execute("INSERT INTO tsdb.caggs VALUES (%s::regclass, %s)", (view, width))
                caggs[view] = width
            else:
                conn.execute(text.encode())
        assert set(caggs) == {"aggregates_15m", "aggregates_1h", "aggregates_1d"}
        hypertables = {r[0] for r in conn.execute("SELECT relation::text FROM tsdb.hypertables")}
        assert hypertables == {
            "readings", "aggregates_1m", "vehicle_positions", "events", "rejects",
        }  # fmt: skip
        for _ in range(2):  # policies are re-applied on every migrate: must be repeatable
            for statement in m.timescaledb_policies(RetentionSettings(readings_days=60)):
                conn.execute(statement.encode())
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


def test_a_unique_key_without_the_time_column_would_be_caught(pg_dsn: str) -> None:
    """The stand-in enforces the rule it claims to check."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(STUBS.encode())
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, ts timestamptz NOT NULL)")
        with pytest.raises(psycopg.errors.RaiseException, match="without the column"):
            conn.execute("SELECT tsdb.create_hypertable('t', tsdb.by_range('ts'))")
