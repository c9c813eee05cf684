"""Why a connection to PostgreSQL failed, said so a person knows the next step: the
database missing, authentication refused, or the server unreachable.

Used by the sink (`gateway run` logs it once per outage), `gateway alerts` and
`gateway db`; libpq reports these before any query, so there is often no sqlstate
and its FATAL message tells them apart.
"""

from __future__ import annotations

import re
import shlex

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def _where(dsn: str) -> str:
    """The DSN as a person reads it, without its password."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(an unreadable DSN)"
    host = params.get("host") or params.get("hostaddr") or "the local socket"
    port = f":{params['port']}" if params.get("port") else ""
    user = f" as {params['user']}" if params.get("user") else ""
    return f"database {params.get('dbname', '(default)')!r} on {host}{port}{user}"


def _public(dsn: str) -> str:
    """The DSN to show in a command: without its password and the timeout we added."""
    params = conninfo_to_dict(dsn)
    return make_conninfo(
        **{k: str(v) for k, v in params.items() if k not in ("password", "connect_timeout")}
    )


_MISSING_DATABASE = ("3D000",)
_AUTH_REFUSED = ("28P01", "28000")


def connect_problem(err: psycopg.OperationalError, dsn: str) -> str:
    """What failed when connecting, with the next step."""
    text = str(err).strip()
    first = next((line for line in text.splitlines() if line.strip()), type(err).__name__)
    state = err.sqlstate or ""
    where = _where(dsn)
    if state in _MISSING_DATABASE or re.search(r'database ".*" does not exist', text):
        return (
            f"the {where} does not exist (the server is up); create it with "
            f"`gateway db migrate --create --dsn {shlex.quote(_public(dsn))}` (or -c with the "
            "gateway's config file), or point the DSN at another database"
        )
    if state in _AUTH_REFUSED or re.search(
        r"password authentication failed|authentication failed|role \".*\" does not exist"
        r"|no pg_hba\.conf entry|password is missing|no password supplied",
        text,
    ):
        return (
            f"the server refused authentication for the {where} ({first}); check the user, "
            "the password (password_env or password_file in -c FILE) and pg_hba.conf"
        )
    return (
        f"cannot reach the PostgreSQL server for the {where} ({first}); is it running, "
        "and are the host and port right?"
    )
