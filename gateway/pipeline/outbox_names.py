"""The outbox's own ids for streams and vehicles, so that an entry means the same after a restart.

Batches carry stream and vehicle ids that belong to one process: a StreamRegistry
interns names in the order it first sees them, and after a restart MQTT
redelivery and Modbus polls race, so the order differs. The outbox therefore
stores entries with ids of its own, whose names it keeps in the same file:

    put:   process id --to_file-->  file id   (a new name is written in the same
                                                transaction as the first entry using it)
    take:  file id    --to_local--> process id (the name registered in this process)

One numpy gather per id column each way; names are looked up only the first
time an id is seen.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from gateway.bundle import Bundle
from gateway.streams import StreamRegistry

NAMES_SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_names (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, unit TEXT NOT NULL, kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vehicle_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
"""

Row = tuple[str, ...]  # (name, unit, kind) for a stream, (name,) for a vehicle


def _grown(table: NDArray[np.int32], size: int) -> NDArray[np.int32]:
    if len(table) >= size:
        return table
    grown = np.full(max(size, 2 * len(table)), -1, np.int32)
    grown[: len(table)] = table
    return grown


class _Space:
    """One id space (streams or vehicles): this process's ids <-> the file's."""

    def __init__(
        self,
        table: str,
        count: Callable[[], int],
        describe: Callable[[int], Row],
        register: Callable[[Row], int],
    ) -> None:
        self.table = table
        self._count = count  # how many ids the process has
        self._describe = describe  # process id -> row
        self._register = register  # row -> process id
        self.rows: list[Row] = []  # file id -> row
        self._by_name: dict[str, int] = {}
        self._to_file = np.full(0, -1, np.int32)
        self._to_local = np.full(0, -1, np.int32)
        self.unwritten: list[tuple[int, Row]] = []

    def load(self, rows: Sequence[tuple[int, Row]]) -> None:
        for ident, row in sorted(rows):
            if ident != len(self.rows):
                raise ValueError(f"{self.table} ids are not dense at {ident}")
            self.rows.append(row)
            self._by_name[row[0]] = ident

    def to_file(self, ids: NDArray[np.int32]) -> NDArray[np.int32]:
        if not len(ids):
            return ids
        if int(ids.min()) < 0 or int(ids.max()) >= self._count():
            raise ValueError(
                f"a batch carries {self.table.removesuffix('_names')} id "
                f"{int(ids.min()) if ids.min() < 0 else int(ids.max())}, which this process "
                "never registered; register every name before emitting its ids"
            )
        self._to_file = _grown(self._to_file, self._count())
        out = self._to_file[ids]
        if (out < 0).any():
            for local in np.unique(ids[out < 0]).tolist():
                row = self._describe(local)
                file_id = self._by_name.get(row[0])
                if file_id is None:
                    file_id = len(self.rows)
                    self.rows.append(row)
                    self._by_name[row[0]] = file_id
                    self.unwritten.append((file_id, row))
                self._to_file[local] = file_id
            out = self._to_file[ids]
        return out

    def to_local(self, ids: NDArray[np.int32]) -> NDArray[np.int32]:
        if not len(ids):
            return ids
        self._to_local = _grown(self._to_local, len(self.rows))
        out = self._to_local[ids]
        if (out < 0).any():
            for file_id in np.unique(ids[out < 0]).tolist():
                self._to_local[file_id] = self._register(self.rows[file_id])
            out = self._to_local[ids]
        return out

    def known(self, ids: NDArray[np.int32]) -> bool:
        """Every id names a row of this file (a body from a damaged file may not)."""
        return not len(ids) or (int(ids.min()) >= 0 and int(ids.max()) < len(self.rows))


class OutboxNames:
    """Translates a bundle's ids between this process and one outbox file."""

    def __init__(self, registry: StreamRegistry) -> None:
        def stream_row(ident: int) -> Row:
            info = registry.info(ident)
            return (info.name, info.unit, info.kind)

        self.streams = _Space(
            "stream_names", lambda: len(registry), stream_row, lambda r: registry.register(*r)
        )
        vehicles = registry.vehicles
        self.vehicles = _Space(
            "vehicle_names",
            lambda: len(vehicles),
            lambda ident: (vehicles.name_of(ident),),
            lambda r: vehicles.intern(r[0]),
        )

    def load(self, db: sqlite3.Connection) -> None:
        self.streams.load(
            [(i, (n, u, k)) for i, n, u, k in db.execute("SELECT * FROM stream_names")]
        )
        self.vehicles.load([(i, (n,)) for i, n in db.execute("SELECT * FROM vehicle_names")])

    def to_file(self, bundle: Bundle) -> Bundle:
        return self._map(bundle, self.streams.to_file, self.vehicles.to_file)

    def to_local(self, bundle: Bundle) -> Bundle:
        return self._map(bundle, self.streams.to_local, self.vehicles.to_local)

    def known(self, bundle: Bundle) -> bool:
        return (
            self.streams.known(bundle.readings.stream)
            and self.streams.known(bundle.aggregates.stream)
            and self.vehicles.known(bundle.fixes.vehicle)
        )

    def unwritten(self) -> list[tuple[str, int, Row]]:
        """Names given out but not yet committed: (table, file id, row)."""
        return [(s.table, i, row) for s in (self.streams, self.vehicles) for i, row in s.unwritten]

    def written(self, rows: Sequence[tuple[str, int, Row]]) -> None:
        """These rows of `unwritten()` are committed."""
        done = {(table, i) for table, i, _ in rows}
        for space in (self.streams, self.vehicles):
            space.unwritten = [(i, r) for i, r in space.unwritten if (space.table, i) not in done]

    @staticmethod
    def _map(
        bundle: Bundle,
        streams: Callable[[NDArray[np.int32]], NDArray[np.int32]],
        vehicles: Callable[[NDArray[np.int32]], NDArray[np.int32]],
    ) -> Bundle:
        return dataclasses.replace(
            bundle,
            readings=dataclasses.replace(bundle.readings, stream=streams(bundle.readings.stream)),
            fixes=dataclasses.replace(bundle.fixes, vehicle=vehicles(bundle.fixes.vehicle)),
            aggregates=dataclasses.replace(
                bundle.aggregates, stream=streams(bundle.aggregates.stream)
            ),
        )


def insert_names(db: sqlite3.Connection, rows: Sequence[tuple[str, int, Row]]) -> None:
    """Write names inside the caller's transaction."""
    for table, ident, row in rows:
        marks = ", ".join("?" * (len(row) + 1))
        db.execute(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", (ident, *row))
