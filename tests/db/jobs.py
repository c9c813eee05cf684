"""TimescaleDB's policy jobs, run in the foreground for tests.

Tests never wait for TimescaleDB's scheduler (on PostgreSQL 15.20 this build's
background jobs are recorded as failed, and timing is not a test's business):
they hold the scheduled runs and CALL run_job(id) themselves, in plain mode
doing nothing, since there the sink keeps the rollups and prunes itself.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from gateway.db.migrate import MigrationReport, migrate

REFRESH = "policy_refresh_continuous_aggregate"
RETENTION = "policy_retention"
COMPRESSION = "policy_compression"


def is_timescaledb(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT mode FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return row is not None and row[0] == "timescaledb"


def hold_jobs(dsn: str) -> None:
    """Stop the scheduler from running this database's policies; run_job still runs them.

    The scheduler starts each new policy within a second of `gateway db migrate`,
    so a run may be under way: it is ended (its transaction rolls back) and the
    test runs the job itself when it means to."""
    if not is_timescaledb(dsn):
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = 'public'"
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type ~ 'Polic'"
        )


async def migrate_held(dsn: str, **options: Any) -> MigrationReport:
    """`migrate`, then hold_jobs: what every test that runs policies starts with."""
    report = await migrate(dsn, **options)
    hold_jobs(dsn)
    return report


def run_jobs(dsn: str, proc: str, *relations: str) -> int:
    """CALL run_job for each policy `proc` on `relations` (all of them when none
    are named), in that order; the number run. 0 in plain mode."""
    if not is_timescaledb(dsn):
        return 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT job_id, hypertable_name FROM timescaledb_information.jobs "
            "WHERE proc_name = %s AND hypertable_schema = 'public'",
            (proc,),
        ).fetchall()
        ids = {str(name): int(job) for job, name in rows}
        order = relations or tuple(sorted(ids))
        for relation in order:
            run_job(conn, ids[relation])
    return len(order)


def run_job(conn: psycopg.Connection[tuple[object, ...]], job: int) -> None:
    """CALL run_job(job); a refresh that a scheduled run ended by hold_jobs still
    holds for a moment is waited for, a few times, since it is the same work."""
    for attempt in range(20):
        try:
            conn.execute("CALL run_job(%s)", (job,))
            return
        except psycopg.errors.LockNotAvailable:
            if attempt == 19:
                raise
            time.sleep(0.25)


def refresh_rollups(dsn: str) -> int:
    """Run the refresh policies of the 15 min, 1 h and 1 d continuous aggregates."""
    return run_jobs(dsn, REFRESH, "aggregates_15m", "aggregates_1h", "aggregates_1d")
