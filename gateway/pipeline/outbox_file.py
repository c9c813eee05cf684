"""The outbox's file: its schema and format version, its settings, its figures and errors,
and opening it safely.

    open_file(path) --quick_check, schema, format--> sqlite3.Connection, or
                     OutboxCorrupt (damaged: `gateway outbox recover`) / OutboxError (format)

`gateway/pipeline/outbox.py` is the queue on top of it; `outbox_command.py` reads the
same file for `gateway outbox stats|recover`.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from gateway.pipeline.outbox_names import NAMES_SCHEMA

# 2: stream and vehicle ids are the file's own, named in stream_names and vehicle_names.
# 1 stored the writing process's ids, which no other process can read.
FORMAT_VERSION = 2

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS entries (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,      -- unix seconds when it was accepted
    class   INTEGER NOT NULL,   -- 0 keep (never shed), 1 raw (shed oldest-first)
    rows    INTEGER NOT NULL,
    ts_min  INTEGER,
    ts_max  INTEGER,
    crc     INTEGER NOT NULL,   -- zlib.crc32 of body
    body    BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq     INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    class   INTEGER NOT NULL,
    rows    INTEGER NOT NULL,
    ts_min  INTEGER,
    ts_max  INTEGER,
    crc     INTEGER NOT NULL,
    body    BLOB NOT NULL,
    failed  REAL NOT NULL,      -- unix seconds when it was set aside
    reason  TEXT NOT NULL
);
"""
    + NAMES_SCHEMA
)

COUNTERS = (
    "format",
    "shed_rows",
    "shed_entries",
    "corrupt_entries",
    "accepted_rows",
    "dead_entries",
    "dead_rows",
)


class OutboxError(RuntimeError):
    """The outbox file cannot be used; the message says why and what to do."""


class OutboxCorrupt(OutboxError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxSettings:
    directory: str = dataclasses.field(
        default="var/outbox", metadata={"help": "one outbox-<sink>.sqlite per sink here"}
    )
    max_memory_bytes: int = dataclasses.field(
        default=32 * 1024 * 1024,
        metadata={"help": "bundles waiting for their commit; put waits beyond this"},
    )
    disk_quota_bytes: int = dataclasses.field(
        default=2 * 1024**3, metadata={"help": "stored bytes before raw readings are shed"}
    )
    live_window_s: float = dataclasses.field(
        default=10.0, metadata={"help": "entries younger than this go out before the backlog"}
    )
    backlog_rows_per_s: float = dataclasses.field(
        default=500_000.0, metadata={"help": "drain rate limit for the backlog; 0 = none"}
    )

    def __post_init__(self) -> None:
        if self.max_memory_bytes < 64 * 1024:
            raise ValueError("max_memory_bytes must be at least 65536")
        if self.disk_quota_bytes < 1024 * 1024:
            raise ValueError("disk_quota_bytes must be at least 1048576 (1 MiB)")
        if self.live_window_s < 0 or self.backlog_rows_per_s < 0:
            raise ValueError("live_window_s and backlog_rows_per_s must be 0 or more")

    def path_for(self, sink_name: str) -> Path:
        return Path(self.directory) / f"outbox-{sink_name}.sqlite"


DEFAULT_SETTINGS = OutboxSettings()


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxStats:
    entries: int
    rows: int
    stored_bytes: int
    oldest_age_s: float  # 0 when empty
    pending_bytes: int  # accepted but not yet committed
    shed_rows: int
    shed_entries: int
    corrupt_entries: int
    accepted_rows: int
    dead_entries: int  # set aside: the sink refused them, or their write kept failing
    dead_rows: int


def connect_file(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a commit is fsync'd before put returns
    return db


def open_file(path: Path) -> sqlite3.Connection:
    """Open an existing or new outbox, refusing a damaged one with the remedy."""
    remedy = (
        f"the gateway refuses to start on it rather than lose what it holds. Run "
        f"`gateway outbox recover {path}` to copy every intact entry into a fresh outbox "
        f"(the damaged file is kept beside it), then start again"
    )
    try:
        db = connect_file(path)
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            db.close()
            raise OutboxCorrupt(f"outbox {path} is damaged ({verdict}); {remedy}")
        db.executescript(SCHEMA)
        row = db.execute("SELECT value FROM counters WHERE name = 'format'").fetchone()
    except sqlite3.DatabaseError as err:
        raise OutboxCorrupt(f"outbox {path} is not readable ({err}); {remedy}") from err
    (entries, rows) = db.execute("SELECT count(*), coalesce(sum(rows), 0) FROM entries").fetchone()
    if row is None or (row[0] == 1 and not entries):
        # new, or an old format with nothing in it to misread
        db.execute(
            "INSERT INTO counters VALUES ('format', ?) ON CONFLICT(name) DO UPDATE "
            "SET value = excluded.value",
            (FORMAT_VERSION,),
        )
    elif row[0] != FORMAT_VERSION:
        db.close()
        why = (
            "its entries name streams and vehicles by ids that only the process that wrote "
            "them could read, so they are not guessed at"
            if row[0] == 1
            else "it was written by a newer gateway"
        )
        raise OutboxError(
            f"outbox {path} has format {row[0]} and holds {entries} entries ({rows} rows); this "
            f"gateway reads format {FORMAT_VERSION}, and {why}. To keep them, run the gateway "
            f"version that wrote the file until `gateway outbox stats {path}` shows 0 entries, "
            "then start this one; or move the file aside to start with an empty outbox"
        )
    return db
