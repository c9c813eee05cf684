"""Settings for the central database: connection, mode and retention.

The password never comes from the TOML: `password_env` names an environment
variable and `password_file` a file holding it. TLS is set in the DSN, e.g.
`postgresql://gw@db.example:5432/gateway?sslmode=verify-full&sslrootcert=/etc/gw/ca.pem`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.config import check_timezone, read_secret

Mode = Literal["auto", "timescaledb", "postgres"]

# Local days and hours of the 1 h / 1 d rollups (migration 0005).
DEFAULT_ROLLUP_TIMEZONE = "Asia/Kolkata"


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long each table keeps rows, in days; 0 keeps them for ever."""

    readings_days: int = dataclasses.field(default=30, metadata={"help": "raw readings"})
    positions_days: int = dataclasses.field(default=90, metadata={"help": "GPS fixes"})
    aggregates_days: int = dataclasses.field(
        default=730, metadata={"help": "1-minute aggregates (rollups are kept)"}
    )
    rejects_days: int = dataclasses.field(default=30, metadata={"help": "refused inputs"})
    events_days: int = dataclasses.field(default=0, metadata={"help": "events (0 = for ever)"})
    compress_after_days: int = dataclasses.field(
        default=7, metadata={"help": "TimescaleDB: compress chunks older than this"}
    )
    # continuous aggregates re-materialise changes this far back; it bounds how
    # late a backlog may arrive and still reach the 15m/1h/1d rollups
    refresh_window_days: int = dataclasses.field(
        default=30, metadata={"help": "TimescaleDB: continuous aggregate refresh window"}
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"{field.name} must be 0 or more days")
        if self.compress_after_days < 1 or self.refresh_window_days < 2:
            raise ValueError("compress_after_days must be >= 1 and refresh_window_days >= 2")
        if 0 < self.aggregates_days <= self.refresh_window_days:
            raise ValueError(
                "aggregates_days must exceed refresh_window_days, or a refresh would "
                "empty rollup buckets whose minutes retention already dropped"
            )


DEFAULT_RETENTION = RetentionSettings()


@dataclasses.dataclass(frozen=True, slots=True)
class PostgresSettings:
    dsn: str = dataclasses.field(
        default="postgresql://postgres@127.0.0.1:5432/gateway",
        metadata={"help": "libpq DSN without a password; TLS via sslmode=verify-full"},
    )
    password_env: str | None = None
    password_file: str | None = None
    mode: Mode = dataclasses.field(
        default="auto", metadata={"help": "auto uses TimescaleDB when the server has it"}
    )
    connect_timeout: float = 5.0
    write_timeout: float = 60.0
    pool_max_size: int = 2
    raw_streams: tuple[str, ...] = dataclasses.field(
        default=("*",),
        metadata={"help": "glob patterns of streams whose raw readings are stored"},
    )
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)
    rollup_timezone: str = dataclasses.field(
        default=DEFAULT_ROLLUP_TIMEZONE,
        metadata={"help": "local days and hours of the 1 h / 1 d rollups; fixed at migration"},
    )

    def __post_init__(self) -> None:
        check_timezone(self.rollup_timezone, "rollup_timezone")
        try:
            params = conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError as err:
            raise ValueError(f"dsn is not a valid PostgreSQL connection string: {err}") from err
        if params.get("password"):
            raise ValueError(
                "dsn holds a password; remove it and set password_env or password_file instead"
            )
        if self.connect_timeout <= 0 or self.write_timeout <= 0 or self.pool_max_size < 1:
            raise ValueError("connect_timeout, write_timeout and pool_max_size must be positive")

    def password(self) -> str | None:
        return read_secret(self.password_env, self.password_file, what="database password")

    def conninfo(self) -> str:
        """The DSN with the password and connect timeout filled in."""
        extra: dict[str, str | int] = {}
        password = self.password()
        if password is not None:
            extra["password"] = password
        if "connect_timeout" not in conninfo_to_dict(self.dsn):
            extra["connect_timeout"] = max(1, round(self.connect_timeout))
        return make_conninfo(self.dsn, **extra)
