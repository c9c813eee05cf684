"""`gateway alerts`: the operator's desk for alerts. List open ones, acknowledge one.

    gateway alerts [--kind K] [--asset A] [--since TIME] [--all]
                   [--dsn DSN | -c FILE | --from FILE.jsonl]
    gateway alerts ack ID --by NAME [--dsn DSN | -c FILE]

It reads the `alerts` table in PostgreSQL (written by the sinks; see
gateway/db/migrations) or, offline, an alerts JSONL file from `gateway replay
--alerts-out`. The database is `--dsn`, else the first PostgreSQL sink of the
gateway config `-c FILE` (with its password), else `$GATEWAY_DSN`, else the local
`gateway`. A connection that fails says which way: the server unreachable, the
database missing, or authentication refused. Acknowledging sets `acked_by` and
`acked_at` once: a second ack reports who acknowledged first and changes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from gateway.config import check_timezone
from gateway.db.problems import connect_problem
from gateway.helptext import HelpFormatter

if TYPE_CHECKING:
    from gateway.settings import Settings

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/gateway"
DEFAULT_ZONE = "Asia/Kolkata"
_SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class AlertDeskError(RuntimeError):
    """The alert store cannot answer (unreachable, missing table, unknown id)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert as the desk shows it; times are aware UTC datetimes."""

    id: str
    kind: str
    asset: str
    severity: str
    state: str
    opened_at: dt.datetime
    magnitude: float | None
    score: float | None
    message: str
    needs_ack: bool
    acked_by: str | None
    started_at: dt.datetime | None = None
    cleared_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AlertFilter:
    kind: str | None = None
    asset: str | None = None  # an exact asset, or a prefix ending in '/' or '*'
    since: dt.datetime | None = None
    include_cleared: bool = False

    def accepts(self, row: AlertRow) -> bool:
        if not self.include_cleared and row.state == "cleared":
            return False
        if self.kind and row.kind != self.kind:
            return False
        if self.asset and not _asset_matches(row.asset, self.asset):
            return False
        return not (self.since and row.opened_at < self.since)


def _asset_matches(asset: str, pattern: str) -> bool:
    if pattern.endswith("*"):
        return asset.startswith(pattern[:-1])
    return asset == pattern or asset.startswith(pattern.rstrip("/") + "/")


def parse_time(text: str) -> dt.datetime:
    """ISO 8601 (a date, or a time with offset; naive means UTC) or epoch seconds."""
    try:
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO 8601 like 2026-01-05T02:00+05:30 or epoch seconds"
        ) from err
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _ns_time(value: Any) -> dt.datetime | None:
    """A time of the alerts JSONL: ISO 8601 with an offset, or ns UTC (older replay files)."""
    if value is None:
        return None
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return dt.datetime.fromtimestamp(int(value) / 1e9, dt.UTC)


def read_jsonl(path: Path) -> list[AlertRow]:
    """Alerts from a JSONL file; when an id appears more than once the last line wins."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    latest[str(obj["id"])] = obj
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise AlertDeskError(f"{path}: line {n}: not an alert object ({err})") from err
    except OSError as err:
        raise AlertDeskError(f"{path}: cannot read: {err.strerror}") from err
    rows = []
    for obj in latest.values():
        try:
            opened = _ns_time(obj.get("opened_at"))
            started, cleared = _ns_time(obj.get("started_at")), _ns_time(obj.get("cleared_at"))
        except ValueError as err:
            raise AlertDeskError(f"{path}: alert {obj['id']}: bad time ({err})") from err
        rows.append(
            AlertRow(
                id=str(obj["id"]), kind=str(obj["kind"]), asset=str(obj["asset"]),
                severity=str(obj.get("severity", "info")), state=str(obj.get("state", "opened")),
                opened_at=opened or dt.datetime.fromtimestamp(0, dt.UTC),
                magnitude=obj.get("magnitude"), score=obj.get("score"),
                message=str(obj.get("message", "")), needs_ack=bool(obj.get("needs_ack")),
                acked_by=obj.get("acked_by"), started_at=started, cleared_at=cleared,
            )
        )  # fmt: skip
    return rows


_COLUMNS = (
    "id, kind, asset, severity, state, opened_at, magnitude, score, message, needs_ack, "
    "acked_by, started_at, cleared_at"
)


def _connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(dsn, connect_timeout=5, row_factory=dict_row)
    except psycopg.OperationalError as err:
        raise AlertDeskError(connect_problem(err, dsn)) from err


def _config(args: argparse.Namespace) -> Settings | None:
    if not args.config:
        return None
    from gateway.settings import load_settings  # noqa: PLC0415 - keeps `gateway --help` fast

    try:
        return load_settings(args.config)
    except ValueError as err:  # a bad file
        raise AlertDeskError(str(err)) from err


def resolve_dsn(args: argparse.Namespace, config: Settings | None = None) -> str:
    """--dsn, else the first PostgreSQL sink of -c FILE, else $GATEWAY_DSN, else the default."""
    if args.dsn:
        return str(args.dsn)
    config = config or _config(args)
    if config is None:
        return os.environ.get("GATEWAY_DSN") or DEFAULT_DSN
    from gateway.db.settings import PostgresSettings  # noqa: PLC0415

    found = config.first_sink("postgres")
    if not isinstance(found, PostgresSettings):
        raise AlertDeskError(
            f'{args.config}: no PostgreSQL sink ([sinks.<name>] type = "postgres"); '
            "give the database with --dsn"
        )
    try:
        return found.conninfo()
    except ValueError as err:  # an unreadable password
        raise AlertDeskError(str(err)) from err


def resolve_zone(args: argparse.Namespace, config: Settings | None = None) -> ZoneInfo:
    """--tz, else the config's [water] timezone, else Asia/Kolkata: where people read times."""
    name = args.tz or (config.water.timezone if config is not None else DEFAULT_ZONE)
    try:
        return ZoneInfo(check_timezone(name, "--tz"))
    except ValueError as err:
        raise AlertDeskError(str(err)) from err


def query_db(dsn: str, flt: AlertFilter) -> list[AlertRow]:
    """Alerts from PostgreSQL, newest first, filtered in SQL."""
    where: list[str] = []
    params: list[object] = []
    if not flt.include_cleared:
        where.append("state <> 'cleared'")
    if flt.kind:
        where.append("kind = %s")
        params.append(flt.kind)
    if flt.asset:
        if flt.asset.endswith("*"):
            where.append("asset LIKE %s")
            params.append(flt.asset[:-1].replace("%", r"\%").replace("_", r"\_") + "%")
        else:
            where.append("(asset = %s OR asset LIKE %s)")
            base = flt.asset.rstrip("/")
            params += [base, base.replace("%", r"\%").replace("_", r"\_") + "/%"]
    if flt.since:
        where.append("opened_at >= %s")
        params.append(flt.since)
    sql = f"SELECT {_COLUMNS} FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at DESC, id"
    with _connect(dsn) as conn:
        try:
            rows = conn.execute(sql.encode(), params).fetchall()
        except psycopg.errors.UndefinedTable as err:
            raise AlertDeskError(
                "no alerts table in this database; run `gateway db migrate` first"
            ) from err
    return [AlertRow(**row) for row in rows]


def acknowledge(dsn: str, alert_id: str, by: str, at: dt.datetime | None = None) -> AlertRow:
    """Set acked_by/acked_at once; raises AlertDeskError if the id is unknown."""
    if not by.strip():
        raise AlertDeskError("say who acknowledges: --by NAME")
    when = at or dt.datetime.now(dt.UTC)
    with _connect(dsn) as conn:
        try:
            conn.execute(
                "UPDATE alerts SET acked_by = %s, acked_at = %s WHERE id = %s AND acked_by IS NULL",
                (by, when, alert_id),
            )
        except psycopg.errors.InsufficientPrivilege as err:
            raise AlertDeskError(
                "this login may read alerts but not acknowledge them; connect as a login in "
                "the gateway_operator role (docs/schema.md, 'Login users')"
            ) from err
        row = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = %s".encode(), (alert_id,))
        found = row.fetchone()
    if found is None:
        raise AlertDeskError(f"no alert with id {alert_id!r}; list them with `gateway alerts`")
    return AlertRow(**found)


def format_table(rows: Sequence[AlertRow], zone: ZoneInfo | None = None) -> str:
    """A table for people: times local to `zone` (default Asia/Kolkata), to the second."""
    if not rows:
        return "no alerts"
    zone = zone or ZoneInfo(DEFAULT_ZONE)
    head = (
        "ID",
        f"OPENED ({zone.key})",
        "KIND",
        "ASSET",
        "SEV",
        "STATE",
        "MAGNITUDE",
        "SCORE",
        "ACK",
    )
    body = []
    for r in rows:
        ack = r.acked_by or ("NEEDED" if r.needs_ack else "-")
        body.append((
            r.id, r.opened_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z"), r.kind, r.asset,
            r.severity, r.state, "-" if r.magnitude is None else f"{r.magnitude:.3g}",
            "-" if r.score is None else f"{r.score:.2f}", ack,
        ))  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip()
        for line in (head, *body)
    )


def _list(args: argparse.Namespace) -> int:
    flt = AlertFilter(args.kind, args.asset, args.since, args.all)
    try:
        config = _config(args)
        zone = resolve_zone(args, config)
        if args.from_file:
            rows = [r for r in read_jsonl(Path(args.from_file)) if flt.accepts(r)]
            rows.sort(key=lambda r: (r.opened_at, r.id), reverse=True)
        else:
            rows = query_db(resolve_dsn(args, config), flt)
    except AlertDeskError as err:
        print(f"gateway alerts: {err}", file=sys.stderr)
        return 2
    if args.json:
        for r in rows:
            print(json.dumps(dataclasses.asdict(r), default=str))
    else:
        print(format_table(rows, zone))
    return 0


def _ack(args: argparse.Namespace) -> int:
    try:
        row = acknowledge(resolve_dsn(args), args.id, args.by)
    except AlertDeskError as err:
        print(f"gateway alerts ack: {err}", file=sys.stderr)
        return 1
    if row.acked_by != args.by:
        print(f"alert {row.id} was already acknowledged by {row.acked_by}")
        return 0
    print(f"alert {row.id} ({row.kind} on {row.asset}) acknowledged by {row.acked_by}")
    return 0


EXAMPLES = """\
examples:
  gateway alerts                                   open alerts, newest first
  gateway alerts -c config/gateway.toml            in the database that config writes to
  GATEWAY_DSN=postgresql://postgres@127.0.0.1/gateway_demo gateway alerts
  gateway alerts --kind leak --asset dma-07 --since 2026-01-05
  gateway alerts --asset 'dma-0*' --all            include cleared ones
  gateway alerts --from alerts.jsonl --kind burst  read a replay's output instead
  gateway alerts ack 3f2a9c0d1e5b7a64 --by asha     acknowledge one
"""


def _database_options(p: argparse.ArgumentParser, *, under: bool = False) -> None:
    # under `alerts`, given only when given: else argparse puts None over `alerts --dsn X ack`
    unset: object = argparse.SUPPRESS if under else None
    p.add_argument(
        "--dsn",
        default=unset,
        help=f"PostgreSQL DSN (default: the config's, else $GATEWAY_DSN, else {DEFAULT_DSN})",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=unset,
        help="the gateway config: read its first PostgreSQL sink (dsn, password)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gateway alerts` (list) and `gateway alerts ack`."""
    p = sub.add_parser(
        "alerts",
        help="list open alerts, or acknowledge one",
        description="List open alerts (from PostgreSQL or a JSONL file) or acknowledge one.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    _database_options(p)
    p.add_argument("--from", dest="from_file", metavar="FILE.jsonl", help="read a JSONL file")
    p.add_argument("--kind", help="leak, burst, transient, sensor_fault, ...")
    p.add_argument("--asset", help="an asset and what is under it (dma-07), or a prefix (dma-0*)")
    p.add_argument("--since", type=parse_time, help="opened at or after (ISO 8601 or epoch s)")
    p.add_argument("--all", action="store_true", help="include cleared alerts")
    p.add_argument(
        "--tz",
        metavar="ZONE",
        help=f"show times in this zone (default: the config's [water] timezone, or {DEFAULT_ZONE})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line, times in UTC")
    p.set_defaults(func=_list)
    actions = p.add_subparsers(title="actions", metavar="ACTION")
    ack = actions.add_parser(
        "ack",
        help="acknowledge an alert",
        description="Acknowledge one alert by id (once; a second ack changes nothing).",
        epilog="examples:\n  gateway alerts ack 3f2a9c0d1e5b7a64 --by asha\n",
        formatter_class=HelpFormatter,
    )
    ack.add_argument("id", help="the alert id (first column of `gateway alerts`)")
    ack.add_argument("--by", required=True, metavar="NAME", help="who acknowledges")
    _database_options(ack, under=True)
    ack.set_defaults(func=_ack)
