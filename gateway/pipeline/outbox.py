"""The durable outbox: bundles on the gateway's disk until the sink confirms them.

    emit --put--> [pending, in memory] --group commit, fsync--> outbox.sqlite
                   bounded in bytes:                          |  entries(seq, class, rows, body)
                   put waits when full                        v
    Delivery <--take (live first, backlog rate-limited)-- index of entries (no bodies)
       |--write ok--> confirm: entries deleted
       '--write failed--> release: entries stay, taken again later

A reading is safe once `put` returns: its entry is committed to SQLite in WAL
mode with synchronous=FULL, so the commit is fsync'd. Several puts waiting at
once share one commit (group commit), which is what makes fsync affordable:
bench/outbox.py measures it against an fsync'd append-only segment file, and
SQLite was chosen because it costs little more per batch while giving atomic
multi-entry commits, deletes of confirmed entries without compaction, and a
file that `gateway outbox stats` can read while the gateway writes
(BENCHMARKS.md, "Storage").

Each bundle is split in two entries by class: `raw` (readings, fixes, rejects),
which the disk quota may shed oldest-first, and `keep` (aggregates, events,
alerts), which is never shed. Shedding is counted in the file, logged, and
shown by `gateway outbox stats`. (A write whose COMMIT reached the database but
whose reply was lost stays in the outbox; if the quota sheds it later, the
shed count includes rows the database has: it may over-count by that write.)

Live first: entries younger than `live_window_s` go out before older ones, so
after an outage the PIS and the control room see now, not an hour ago; the
backlog drains oldest-first behind them, at most `backlog_rows_per_s`.

Stream and vehicle ids in the stored bodies are the file's own, with their
names in the same file (`outbox_names.py`), so an entry decodes to the same
streams and vehicles in the next process, whatever order that one registers
them in.

An entry the sink refuses for good, or whose write keeps failing with an
error that is not an outage, is moved to the `dead_letters` table with its
reason, so the queue does not block behind it; `gateway outbox stats` and
/metrics count them. A failed write of several entries at once is retried
one entry at a time first, so only the bad one is set aside.

Every body carries a CRC32. A file that is not a readable SQLite database, or
fails its integrity check, is refused at start with a message that says how to
recover what is intact (`gateway outbox recover`); it is never silently emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from gateway.bundle import Bundle
from gateway.logs import get_logger
from gateway.metrics import Measurement
from gateway.parts import QueueClosed
from gateway.pipeline.outbox_codec import EntryClass, decode_body, encode_parts
from gateway.pipeline.outbox_file import (
    COUNTERS,
    DEFAULT_SETTINGS,
    OutboxError,
    OutboxSettings,
    OutboxStats,
    open_file,
)
from gateway.pipeline.outbox_names import OutboxNames, Row, insert_names
from gateway.streams import StreamRegistry

log = get_logger("gateway.outbox")

# a write that fails this many times with an error that is not an outage is set aside
MAX_ATTEMPTS = 3


@dataclasses.dataclass(slots=True)
class _Entry:
    created: float
    cls: EntryClass
    rows: int
    nbytes: int
    failures: int = 0  # failed writes that were not an outage; such an entry goes alone


class Outbox:
    """A durable, byte-bounded, live-first queue of bundles for one sink.

    Delivery uses it like a BundleQueue: `put`, `take`, then `confirm` once the
    sink stored the taken bundle or `release` to keep it for a later take.
    """

    durable = True

    def __init__(
        self,
        path: str | Path,
        settings: OutboxSettings,
        db: sqlite3.Connection,
        registry: StreamRegistry,
    ) -> None:
        self.path = Path(path)
        self.settings = settings
        self._db = db
        self._names = OutboxNames(registry)
        self._index: OrderedDict[int, _Entry] = OrderedDict()
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._stored = 0
        self._rows = 0
        self._pending: list[tuple[list[Any], asyncio.Future[None]]] = []
        self._pending_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._leased: list[int] = []
        self._closed = False
        self._changed: asyncio.Condition | None = None
        self._db_lock: asyncio.Lock | None = None
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        # turn-taking between live data and the backlog: the backlog's turn comes
        # after a live bundle was delivered; a failed write gives the turn back
        # to live, so the first write after an outage is live data
        self._served_live = False
        self._lease_live = False
        self._load()

    @classmethod
    def open(
        cls,
        path: str | Path,
        registry: StreamRegistry,
        settings: OutboxSettings = DEFAULT_SETTINGS,
    ) -> Outbox:
        """Open (or create) the outbox at `path`; raise OutboxCorrupt for a damaged file.

        Bundles put and taken carry ids of `registry`, the process's own."""
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutboxError(f"cannot create {p.parent}: {err.strerror}") from err
        outbox = cls(p, settings, open_file(p), registry)
        if len(outbox._index):
            log.info(
                "outbox.resumed",
                path=str(p),
                entries=len(outbox._index),
                rows=outbox._rows,
                stored_bytes=outbox._stored,
            )
        return outbox

    def _load(self) -> None:
        for seq, created, cls, rows, nbytes in self._db.execute(
            "SELECT seq, created, class, rows, length(body) FROM entries ORDER BY seq"
        ):
            self._index[seq] = _Entry(created, EntryClass(cls), rows, nbytes)
            self._stored += nbytes
            self._rows += rows
        for name, value in self._db.execute("SELECT name, value FROM counters"):
            self._counters[name] = int(value)
        self._names.load(self._db)

    # the loop objects are made on first use: no loop is needed to open a file
    @property
    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    @property
    def _lock(self) -> asyncio.Lock:
        if self._db_lock is None:
            self._db_lock = asyncio.Lock()
        return self._db_lock

    # -- BundleQueue surface -------------------------------------------------------

    @property
    def rows(self) -> int:
        """Rows stored and not yet confirmed (including a taken, unconfirmed bundle)."""
        return self._rows

    @property
    def nbytes(self) -> int:
        return self._pending_bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._index)

    async def put(self, bundle: Bundle) -> None:
        """Store `bundle`; returns once it is committed to disk (fsync'd)."""
        if self._closed:
            raise QueueClosed("the pipeline is shutting down")
        parts = encode_parts(self._names.to_file(bundle))
        if not parts:
            return
        size = sum(len(p[4]) for p in parts)
        async with self._cond:
            await self._cond.wait_for(
                lambda: (
                    self._closed
                    or not self._pending
                    or self._pending_bytes + size <= self.settings.max_memory_bytes
                )
            )
            if self._closed:
                raise QueueClosed("the pipeline is shutting down")
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending.append((parts, done))
            self._pending_bytes += size
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush(), name=f"outbox:{self.path.name}")
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            parts = [p for entry_parts, _ in batch for p in entry_parts]
            names = self._names.unwritten()
            try:
                async with self._lock:
                    added, shed = await asyncio.to_thread(self._insert, parts, names)
            except (sqlite3.Error, OSError) as err:
                error = OutboxError(f"cannot write the outbox {self.path}: {err}")
                log.error("outbox.write_failed", path=str(self.path), error=str(err))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(error)
                async with self._cond:
                    self._pending_bytes -= sum(len(p[4]) for p in parts)
                    self._cond.notify_all()
                continue
            self._names.written(names)
            async with self._cond:
                for seq, entry in added:
                    self._index[seq] = entry
                    self._stored += entry.nbytes
                    self._rows += entry.rows
                for seq in shed:
                    gone = self._index.pop(seq)
                    self._stored -= gone.nbytes
                    self._rows -= gone.rows
                self._pending_bytes -= sum(len(p[4]) for p in parts)
                self._cond.notify_all()
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    def _insert(
        self,
        parts: list[tuple[EntryClass, int, int | None, int | None, bytes]],
        names: list[tuple[str, int, Row]],
    ) -> tuple[list[tuple[int, _Entry]], list[int]]:
        """One transaction: new names, the new entries, then shedding if over quota.
        Worker thread."""
        db = self._db
        now = time.time()
        added: list[tuple[int, _Entry]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            insert_names(db, names)
            for cls, rows, ts_min, ts_max, body in parts:
                cur = db.execute(
                    "INSERT INTO entries (created, class, rows, ts_min, ts_max, crc, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (now, int(cls), rows, ts_min, ts_max, zlib.crc32(body), body),
                )
                assert cur.lastrowid is not None
                added.append((cur.lastrowid, _Entry(now, cls, rows, len(body))))
            accepted = sum(e.rows for _, e in added)
            self._bump(db, "accepted_rows", accepted)
            shed = self._shed(db, sum(e.nbytes for _, e in added))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return added, shed

    def _bump(self, db: sqlite3.Connection, name: str, by: int) -> None:
        if by:
            db.execute(
                "INSERT INTO counters VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )
            self._counters[name] = self._counters.get(name, 0) + by

    def _shed(self, db: sqlite3.Connection, adding: int) -> list[int]:
        """Delete the oldest raw entries until the store fits its quota again."""
        over = self._stored + adding - self.settings.disk_quota_bytes
        if over <= 0:
            return []
        leased = set(self._leased)
        victims: list[int] = []
        rows = 0
        for seq, entry in self._index.items():
            if over <= 0:
                break
            if entry.cls is EntryClass.RAW and seq not in leased:
                victims.append(seq)
                over -= entry.nbytes
                rows += entry.rows
        if victims:
            db.executemany("DELETE FROM entries WHERE seq = ?", [(s,) for s in victims])
            self._bump(db, "shed_rows", rows)
            self._bump(db, "shed_entries", len(victims))
            log.warning(
                "outbox.shed",
                path=str(self.path),
                entries=len(victims),
                rows=rows,
                reason="disk quota reached; oldest raw readings dropped",
                quota_bytes=self.settings.disk_quota_bytes,
            )
        if over > 0:
            log.warning(
                "outbox.over_quota",
                path=str(self.path),
                over_bytes=over,
                reason="only alerts, events and aggregates are left; they are never shed",
            )
        return victims

    async def take(self, max_rows: int, max_wait: float) -> Bundle | None:
        """Lease entries up to `max_rows` rows: live ones first, else the oldest
        backlog within the rate limit. Returns None once closed and drained."""
        if self._leased:
            raise RuntimeError("confirm or release the previous take first")
        loop = asyncio.get_running_loop()
        async with self._cond:
            while True:
                await self._cond.wait_for(lambda: self._closed or bool(self._index))
                if not self._index:
                    return None
                first = next(iter(self._index))
                live = self._live_start()
                if live == first:  # no backlog
                    if not self._closed:  # batch by size and time, as BundleQueue does
                        await self._gather(max_rows, loop.time() + max_wait)
                    seqs = self._select(first, max_rows)
                    self._lease_live = True
                    break
                # A backlog. Live and backlog take turns, so neither starves:
                # live goes first after an outage, the backlog drains behind it.
                if live is None or self._served_live:
                    seqs = self._select(first, max_rows, stop=live)
                    wait = self._backlog_wait(sum(self._index[s].rows for s in seqs))
                    if wait <= 0:
                        self._lease_live = False
                        break
                    if live is None:
                        with contextlib.suppress(TimeoutError):  # live arriving goes first
                            async with asyncio.timeout(wait):
                                await self._cond.wait()
                        continue
                assert live is not None
                seqs = self._select(live, max_rows)
                self._lease_live = True
                break
            self._leased = seqs
        try:
            async with self._lock:
                bodies, bad = await asyncio.to_thread(self._read, seqs)
        except sqlite3.Error as err:
            self._leased = []
            raise OutboxError(f"cannot read the outbox {self.path}: {err}") from err
        except BaseException:
            self._leased = []
            raise
        if bad:
            async with self._cond:
                for seq in bad:
                    gone = self._index.pop(seq, None)
                    if gone is not None:
                        self._stored -= gone.nbytes
                        self._rows -= gone.rows
            self._leased = [s for s in self._leased if s not in set(bad)]
        if not bodies:
            self._leased = []
            return Bundle()
        return self._names.to_local(Bundle.merge(bodies))

    async def _gather(self, max_rows: int, deadline: float) -> None:
        """Wait until `max_rows` rows are stored or `deadline` passes."""
        loop = asyncio.get_running_loop()
        while self._rows < max_rows and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._cond.wait()
            except TimeoutError:
                return

    def _live_start(self) -> int | None:
        """The first seq of the live suffix, or None when nothing is live."""
        horizon = time.time() - self.settings.live_window_s
        first: int | None = None
        for seq in reversed(self._index):
            if self._index[seq].created < horizon:
                break
            first = seq
        return first

    def _select(self, start: int, max_rows: int, stop: int | None = None) -> list[int]:
        """Consecutive seqs from `start` (up to, not including, `stop`) within max_rows.
        An entry whose write failed goes alone, so a bad one is found and set aside."""
        seqs: list[int] = []
        rows = 0
        started = False
        for seq, entry in self._index.items():
            if seq == stop:
                break
            started = started or seq == start
            if not started:
                continue
            if seqs and (rows + entry.rows > max_rows or entry.failures):
                break
            seqs.append(seq)
            rows += entry.rows
            if entry.failures:
                break
        return seqs

    def _backlog_wait(self, rows: int) -> float:
        rate = self.settings.backlog_rows_per_s
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        self._tokens = min(max(rate, float(rows)), self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens >= rows:
            self._tokens -= rows
            return 0.0
        return (rows - self._tokens) / rate

    def _read(self, seqs: list[int]) -> tuple[list[Bundle], list[int]]:
        """Bodies of `seqs`, checked against their CRC. Worker thread."""
        marks = ",".join("?" * len(seqs))
        rows = self._db.execute(
            f"SELECT seq, crc, body FROM entries WHERE seq IN ({marks}) ORDER BY seq",
            seqs,
        ).fetchall()
        out: list[Bundle] = []
        bad: list[int] = []
        for seq, crc, body in rows:
            try:
                if zlib.crc32(body) != crc:
                    raise ValueError("CRC mismatch")
                bundle = decode_body(body)
                if not self._names.known(bundle):
                    raise ValueError("it names a stream or vehicle id the file does not list")
                out.append(bundle)
            except (ValueError, TypeError, KeyError, msgspec.DecodeError) as err:
                bad.append(seq)
                log.error("outbox.corrupt_entry", path=str(self.path), seq=seq, error=str(err))
        if bad:
            # kept aside, not deleted: an operator can still inspect the bytes
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS quarantine AS SELECT * FROM entries WHERE 0"
            )
            self._db.executemany(
                "INSERT INTO quarantine SELECT * FROM entries WHERE seq = ?", [(s,) for s in bad]
            )
            self._db.executemany("DELETE FROM entries WHERE seq = ?", [(s,) for s in bad])
            self._bump(self._db, "corrupt_entries", len(bad))
            self._db.execute("COMMIT")
        return out, bad

    async def confirm(self) -> None:
        """The sink stored the taken bundle: delete its entries."""
        self._served_live = self._lease_live
        seqs, self._leased = self._leased, []
        if not seqs:
            return
        try:
            async with self._lock:
                await asyncio.to_thread(self._delete, seqs)
        except sqlite3.Error as err:
            raise OutboxError(f"cannot update the outbox {self.path}: {err}") from err
        async with self._cond:
            for seq in seqs:
                gone = self._index.pop(seq, None)
                if gone is not None:
                    self._stored -= gone.nbytes
                    self._rows -= gone.rows
            self._cond.notify_all()

    def _delete(self, seqs: list[int]) -> None:
        # Not fsync'd on its own: a delete lost in a crash re-sends entries the
        # sink already has, and its writes are idempotent. The next put's
        # commit makes it durable anyway.
        db = self._db
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM entries WHERE seq = ?", [(s,) for s in seqs])
            db.execute("COMMIT")
        finally:
            db.execute("PRAGMA synchronous=FULL")

    async def fail(self, reason: str, *, final: bool) -> None:
        """The write of the taken bundle failed, and not because the sink is down.

        `final` (the sink refused it for good) sets a lone entry aside at once;
        otherwise after MAX_ATTEMPTS failures. Entries taken together are first
        retried one at a time, so only the bad one is set aside."""
        seqs = self._leased
        self._leased = []
        self._served_live = False
        entries = [(s, self._index[s]) for s in seqs if s in self._index]
        for _, entry in entries:
            entry.failures += 1
        dead = [
            s
            for s, entry in entries
            if len(entries) == 1 and (final or entry.failures >= MAX_ATTEMPTS)
        ]
        if dead:
            try:
                async with self._lock:
                    await asyncio.to_thread(self._set_aside, dead, reason)
            except sqlite3.Error as err:
                raise OutboxError(f"cannot update the outbox {self.path}: {err}") from err
            rows = sum(self._index[s].rows for s in dead)
            log.error(
                "outbox.dead_letter",
                path=str(self.path),
                seq=dead[0],
                rows=rows,
                reason=reason,
                remedy="kept in the dead_letters table; see `gateway outbox stats`",
            )
        async with self._cond:
            for seq in dead:
                gone = self._index.pop(seq)
                self._stored -= gone.nbytes
                self._rows -= gone.rows
            self._cond.notify_all()

    def _set_aside(self, seqs: list[int], reason: str) -> None:
        db = self._db
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            for seq in seqs:
                db.execute(
                    "INSERT OR REPLACE INTO dead_letters SELECT *, ?, ? FROM entries WHERE seq = ?",
                    (now, reason, seq),
                )
                (rows,) = db.execute("SELECT rows FROM entries WHERE seq = ?", (seq,)).fetchone()
                db.execute("DELETE FROM entries WHERE seq = ?", (seq,))
                self._bump(db, "dead_entries", 1)
                self._bump(db, "dead_rows", rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def release(self) -> None:
        """The sink did not take the bundle: its entries stay for a later take."""
        self._leased = []
        self._served_live = False
        async with self._cond:
            self._cond.notify_all()

    async def close(self) -> None:
        """No more puts; takes drain what is stored. The file stays open for them."""
        async with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    def close_file(self) -> None:
        """Close the SQLite file (after the delivery stopped)."""
        self._db.close()

    # -- inspection ----------------------------------------------------------------

    def stats(self) -> OutboxStats:
        first = next(iter(self._index.values()), None)
        age = max(0.0, time.time() - first.created) if first else 0.0
        c = self._counters
        return OutboxStats(
            entries=len(self._index),
            rows=self._rows,
            stored_bytes=self._stored,
            oldest_age_s=age,
            pending_bytes=self._pending_bytes,
            shed_rows=c.get("shed_rows", 0),
            shed_entries=c.get("shed_entries", 0),
            corrupt_entries=c.get("corrupt_entries", 0),
            accepted_rows=c.get("accepted_rows", 0),
            dead_entries=c.get("dead_entries", 0),
            dead_rows=c.get("dead_rows", 0),
        )

    def measurements(self) -> Iterable[Measurement]:
        s = self.stats()
        labels = (("outbox", self.path.stem),)
        yield Measurement(
            "outbox_entries", s.entries, "bundle parts waiting for the sink", labels=labels
        )
        yield Measurement("outbox_rows", s.rows, "rows waiting for the sink", labels=labels)
        yield Measurement("outbox_stored_bytes", s.stored_bytes, "bytes stored", labels=labels)
        yield Measurement(
            "outbox_oldest_age_seconds", s.oldest_age_s, "age of the oldest entry", labels=labels
        )
        yield Measurement(
            "outbox_pending_bytes", s.pending_bytes, "accepted, not yet committed", labels=labels
        )
        yield Measurement(
            "outbox_shed_rows", s.shed_rows, "raw rows shed at the disk quota", "counter", labels
        )
        yield Measurement(
            "outbox_corrupt_entries", s.corrupt_entries, "entries quarantined", "counter", labels
        )
        yield Measurement(
            "outbox_accepted_rows", s.accepted_rows, "rows accepted", "counter", labels
        )
        yield Measurement(
            "outbox_dead_letter_entries",
            s.dead_entries,
            "entries set aside: refused by the sink, or their write kept failing",
            "counter",
            labels,
        )
        yield Measurement(
            "outbox_dead_letter_rows", s.dead_rows, "rows in those entries", "counter", labels
        )


def open_outboxes(
    sink_names: Iterable[str], settings: OutboxSettings, registry: StreamRegistry
) -> dict[str, Outbox]:
    """One outbox per sink, opened (and checked) before the runtime starts:

        boxes = open_outboxes([s.name for s in sinks], settings.outbox, registry)
        Runtime(sources, sinks, stages, runtime_settings, queue_for=lambda s: boxes[s.name])

    Raises OutboxError / OutboxCorrupt with the remedy; close files already
    opened before re-raising, so a refused start leaves nothing behind.
    """
    boxes: dict[str, Outbox] = {}
    try:
        for name in sink_names:
            boxes[name] = Outbox.open(settings.path_for(name), registry, settings)
    except OutboxError:
        for box in boxes.values():
            box.close_file()
        raise
    return boxes
