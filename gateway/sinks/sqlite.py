"""SqliteSink: the embedded store used when no PostgreSQL is reachable.

Same natural keys as the PostgreSQL schema, so a re-sent bundle adds nothing:
readings and aggregates on (stream, ts), fixes on (vehicle, ts), alerts on id
(latest state wins), events on (asset, kind, ts), rejects on (source, ts, reason).
SQLite stores NaN as NULL, which is what a failed poll's value means. Writes
run in a worker thread, one transaction per bundle, WAL mode with
synchronous=FULL so a confirmed write survives power loss.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.bundle import Bundle
from gateway.parts import SinkRejected, SinkUnavailable, Wiring
from gateway.streams import StreamRegistry

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, unit TEXT, kind TEXT, asset TEXT
);
CREATE TABLE IF NOT EXISTS readings (
    stream INTEGER NOT NULL REFERENCES streams(id), ts INTEGER NOT NULL,
    value REAL, quality INTEGER NOT NULL, PRIMARY KEY (stream, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vehicle_positions (
    vehicle TEXT NOT NULL, ts INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    speed REAL, heading REAL, fix INTEGER NOT NULL, PRIMARY KEY (vehicle, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aggregates_1m (
    stream INTEGER NOT NULL REFERENCES streams(id), ts INTEGER NOT NULL, count INTEGER NOT NULL,
    min REAL, max REAL, mean REAL, sum REAL, last REAL, PRIMARY KEY (stream, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    ts INTEGER NOT NULL, asset TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (asset, kind, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejects (
    ts INTEGER NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT, payload BLOB,
    PRIMARY KEY (source, ts, reason)
) WITHOUT ROWID;
"""


@dataclasses.dataclass(frozen=True, slots=True)
class SqliteSettings:
    path: str = dataclasses.field(
        default="var/gateway.sqlite", metadata={"help": "embedded store on the gateway's disk"}
    )


TABLES = ("readings", "aggregates_1m", "vehicle_positions", "alerts", "events", "rejects")


class SqliteSink:
    def __init__(self, path: str | Path, registry: StreamRegistry, name: str = "sqlite") -> None:
        self.name = name
        self.path = Path(path)
        self.registry = registry
        self._db: sqlite3.Connection | None = None
        self._ids: NDArray[np.int64] = np.full(0, -1, np.int64)  # registry id -> sqlite streams.id

    @classmethod
    def create(cls, name: str, settings: SqliteSettings, wiring: Wiring) -> SqliteSink:
        return cls(settings.path, wiring.registry, name=name)

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise SinkUnavailable(f"cannot open {self.path}: {err}") from err
        self._db = db

    async def write(self, bundle: Bundle) -> None:
        await asyncio.to_thread(self._write, bundle)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def rows(self, table: str, since_ns: int = 0) -> int:
        """Rows of one table with ts >= since_ns (for the demo summary and tests)."""
        if self._db is None:
            return 0
        if table not in TABLES or table == "alerts":
            raise ValueError(f"no table {table!r} with a ts column")
        query = f"SELECT count(*) FROM {table} WHERE ts >= ?"
        (count,) = self._db.execute(query, (since_ns,)).fetchone()
        return int(count)

    def _stream_ids(self, db: sqlite3.Connection, local: NDArray[np.int32]) -> NDArray[np.int64]:
        if len(self._ids) < len(self.registry):
            grown = np.full(len(self.registry), -1, np.int64)
            grown[: len(self._ids)] = self._ids
            self._ids = grown
        for ident in np.unique(local[self._ids[local] < 0]).tolist():
            info = self.registry.info(ident)
            db.execute(
                "INSERT INTO streams (name, unit, kind, asset) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO NOTHING",
                (info.name, info.unit, info.kind, info.asset),
            )
            (row_id,) = db.execute("SELECT id FROM streams WHERE name = ?", (info.name,)).fetchone()
            self._ids[ident] = row_id
        ids: NDArray[np.int64] = self._ids[local]
        return ids

    def _write(self, bundle: Bundle) -> None:
        db = self._db
        if db is None:
            raise SinkUnavailable("the SQLite store is not open")
        try:
            db.execute("BEGIN IMMEDIATE")
            self._write_parts(db, bundle)
            db.execute("COMMIT")
        except sqlite3.OperationalError as err:  # disk full, locked, I/O error: may pass
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise SinkUnavailable(f"SQLite write failed: {err}") from err
        except sqlite3.DatabaseError as err:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise SinkRejected(f"SQLite refused the bundle: {err}") from err

    def _write_parts(self, db: sqlite3.Connection, bundle: Bundle) -> None:
        r = bundle.readings
        if len(r):
            ids = self._stream_ids(db, r.stream)
            db.executemany(
                "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)",
                zip(
                    ids.tolist(),
                    r.ts.tolist(),
                    r.value.tolist(),
                    r.quality.tolist(),
                    strict=True,
                ),
            )
        f = bundle.fixes
        if len(f):
            names = [self.registry.vehicles.name_of(v) for v in f.vehicle.tolist()]
            db.executemany(
                "INSERT OR IGNORE INTO vehicle_positions VALUES (?, ?, ?, ?, ?, ?, ?)",
                zip(
                    names,
                    f.ts.tolist(),
                    f.lat.tolist(),
                    f.lon.tolist(),
                    f.speed.tolist(),
                    f.heading.tolist(),
                    f.fix.tolist(),
                    strict=True,
                ),
            )
        a = bundle.aggregates
        if len(a):
            db.executemany(
                "INSERT OR IGNORE INTO aggregates_1m VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                zip(
                    self._stream_ids(db, a.stream).tolist(),
                    a.ts.tolist(),
                    a.count.tolist(),
                    a.min.tolist(),
                    a.max.tolist(),
                    a.mean.tolist(),
                    a.sum.tolist(),
                    a.last.tolist(),
                    strict=True,
                ),
            )
        if bundle.alerts:
            db.executemany(
                "INSERT INTO alerts VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
                [(a.id, a.state.value, json.dumps(a.to_dict())) for a in bundle.alerts],
            )
        if bundle.events:
            db.executemany(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
                [(e.ts, e.asset, e.kind, json.dumps(e.to_dict())) for e in bundle.events],
            )
        if bundle.rejects:
            db.executemany(
                "INSERT OR IGNORE INTO rejects VALUES (?, ?, ?, ?, ?)",
                [(x.ts, x.source, x.reason, x.detail, x.payload) for x in bundle.rejects],
            )
