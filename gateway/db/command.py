"""`gateway db migrate` and `gateway db status`: the central database's schema and health.

Register with `gateway.db.command.register(sub)` in the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys

from gateway.db.migrate import MigrationError, ensure_database, migrate
from gateway.db.settings import PostgresSettings, RetentionSettings
from gateway.db.status import StatusError, read_status
from gateway.helptext import HelpFormatter
from gateway.settings import load_settings

_RETENTION_FLAGS = (
    "readings_days",
    "positions_days",
    "aggregates_days",
    "rejects_days",
    "events_days",
    "compress_after_days",
)

EXAMPLES = """\
examples:
  gateway db migrate --dsn postgresql://postgres@127.0.0.1:5432/gateway
  gateway db migrate -c /etc/gateway/gateway.toml --create
  gateway db migrate --dsn postgresql://postgres@127.0.0.1/gateway --create
  gateway db migrate --dsn 'postgresql://admin@db.example/gateway?sslmode=verify-full' \\
      --password-env GATEWAY_DB_PASSWORD --mode timescaledb --readings-days 60

The command prints the mode it chose: timescaledb when the extension is available
(hypertables, compression, continuous aggregates, retention policies), else
postgres (plain PostgreSQL 14+ with BRIN indexes and rollups kept by the gateway).
Running it again applies only what is new, and re-applies the retention and
compression policies with the intervals given. The 1 h and 1 d rollups are
bucketed in local hours and days of --rollup-timezone (default Asia/Kolkata),
fixed when first applied.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db",
        help="manage the central database",
        description="Manage the central PostgreSQL / TimescaleDB database.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    mig = db_sub.add_parser(
        "migrate",
        help="apply the schema migrations",
        description="Apply the versioned schema migrations and report the mode chosen.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    mig.add_argument(
        "--dsn",
        default=os.environ.get("GATEWAY_DSN"),
        help="libpq connection string without a password (default: $GATEWAY_DSN)",
    )
    mig.add_argument("--password-env", help="environment variable holding the password")
    mig.add_argument("--password-file", help="file holding the password")
    mig.add_argument(
        "--mode",
        choices=["auto", "timescaledb", "postgres"],
        help="auto: TimescaleDB when the server has it (default)",
    )
    mig.add_argument("--create", action="store_true", help="create the database if missing")
    mig.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="take [postgres] (dsn, password, mode, retention, rollup_timezone) from this "
        "gateway config; the options given here override it",
    )
    defaults = RetentionSettings()
    for field in ("readings", "positions", "aggregates", "rejects", "events"):
        default = getattr(defaults, f"{field}_days")
        mig.add_argument(
            f"--{field}-days",
            type=int,
            help=f"retention of {field} in days, 0 keeps them (default {default})",
        )
    mig.add_argument(
        "--compress-after-days",
        type=int,
        help="TimescaleDB: compress chunks older than this many days "
        f"(default {defaults.compress_after_days})",
    )
    mig.add_argument(
        "--rollup-timezone",
        metavar="ZONE",
        help="IANA time zone of the local days and hours of the 1 h / 1 d rollups; fixed "
        "when first applied, a later run with another zone is refused "
        f"(default {PostgresSettings().rollup_timezone})",
    )
    mig.set_defaults(func=run_migrate)
    register_status(db_sub)


STATUS_EXAMPLES = """\
examples:
  gateway db status -c /etc/gateway/gateway.toml
  gateway db status --dsn postgresql://monitor@db.example/gateway --json --max-failures 3

Exit status: 0 healthy, 1 a job failed more than --max-failures times in a row or
a rollup is more than two buckets behind its minutes (each printed as a problem),
2 the status could not be read.
"""


def register_status(db_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = db_sub.add_parser(
        "status",
        help="the database's health: mode, chunks, rollups' lag, jobs, retention, sizes",
        description="Show the central database's mode and schema version, hypertables "
        "(chunks, size, compression), rollups (newest bucket, lag), TimescaleDB jobs "
        "(schedule, last run, failures in a row), retention horizons and table sizes.",
        epilog=STATUS_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    st.add_argument(
        "--dsn",
        default=os.environ.get("GATEWAY_DSN"),
        help="libpq connection string without a password (default: $GATEWAY_DSN)",
    )
    st.add_argument("--password-env", help="environment variable holding the password")
    st.add_argument("--password-file", help="file holding the password")
    st.add_argument(
        "-c", "--config", metavar="FILE", help="take [postgres] from this gateway config"
    )
    st.add_argument("--json", action="store_true", help="one JSON object, for monitoring")
    st.add_argument(
        "--max-failures",
        type=int,
        default=3,
        metavar="N",
        help="unhealthy when a job has failed more than N times in a row (default 3)",
    )
    st.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        if settings is None:
            print("gateway db status: give --dsn, set GATEWAY_DSN, or -c CONFIG", file=sys.stderr)
            return 2
        conninfo = settings.conninfo()
        status = asyncio.run(read_status(conninfo, settings.retention))
    except (ValueError, StatusError) as err:
        print(f"gateway db status: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status.as_json(args.max_failures), default=str))
    else:
        print(status.describe(args.max_failures))
    return 1 if status.problems(args.max_failures) else 0


def _config_postgres(path: str) -> PostgresSettings:
    """The config file's first PostgreSQL sink (its defaults when it has none)."""
    found = load_settings(path).first_sink("postgres")
    return found if isinstance(found, PostgresSettings) else PostgresSettings()


def run_migrate(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        if settings is None:
            print("gateway db migrate: give --dsn, set GATEWAY_DSN, or -c CONFIG", file=sys.stderr)
            return 2
        conninfo = settings.conninfo()
    except ValueError as err:  # a bad file, DSN or setting, or an unreadable password
        print(f"gateway db migrate: {err}", file=sys.stderr)
        return 2
    run = ensure_database if args.create else migrate
    try:
        report = asyncio.run(
            run(
                conninfo,
                mode=settings.mode,
                retention=settings.retention,
                rollup_timezone=settings.rollup_timezone,
            )
        )
    except MigrationError as err:
        print(f"gateway db migrate: {err}", file=sys.stderr)
        return 1
    print(report.describe())
    return 0


def _settings(args: argparse.Namespace) -> PostgresSettings | None:
    """The config file's first PostgreSQL sink when given, with the flags given on top."""
    if args.config:
        base = _config_postgres(args.config)
    elif args.dsn:
        base = PostgresSettings(dsn=args.dsn)
    else:
        return None
    # `db status` has no mode, zone or retention flags: those stay as the file says
    given = {
        name: getattr(args, name)
        for name in ("dsn", "password_env", "password_file", "mode", "rollup_timezone")
        if getattr(args, name, None) is not None
    }
    retention = {
        name: getattr(args, name)
        for name in _RETENTION_FLAGS
        if getattr(args, name, None) is not None
    }
    return dataclasses.replace(
        base, **given, retention=dataclasses.replace(base.retention, **retention)
    )
