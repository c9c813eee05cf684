"""`gateway outbox stats|recover`: read an outbox file, or save what is intact.

Both work on the file alone, read-only for `stats`, while a gateway may be
writing it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sqlite3
import sys
import time
import zlib
from pathlib import Path

import msgspec

from gateway.helptext import HelpFormatter
from gateway.logs import get_logger
from gateway.pipeline.outbox_file import (
    FORMAT_VERSION,
    SCHEMA,
    OutboxCorrupt,
    OutboxError,
    OutboxSettings,
    OutboxStats,
    connect_file,
)

log = get_logger("gateway.outbox")


def read_stats(path: str | Path) -> OutboxStats:
    """Figures for an outbox file, read-only, while a gateway may be writing it."""
    p = Path(path)
    if not p.exists():
        raise OutboxError(f"no outbox at {p}")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            n, rows, stored, oldest = db.execute(
                "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(length(body)), 0), "
                "min(created) FROM entries"
            ).fetchone()
            counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise OutboxCorrupt(f"outbox {p} is not readable ({err})") from err
    return OutboxStats(
        entries=int(n),
        rows=int(rows),
        stored_bytes=int(stored),
        oldest_age_s=max(0.0, time.time() - oldest) if oldest is not None else 0.0,
        pending_bytes=0,
        shed_rows=int(counters.get("shed_rows", 0)),
        shed_entries=int(counters.get("shed_entries", 0)),
        corrupt_entries=int(counters.get("corrupt_entries", 0)),
        accepted_rows=int(counters.get("accepted_rows", 0)),
        dead_entries=int(counters.get("dead_entries", 0)),
        dead_rows=int(counters.get("dead_rows", 0)),
    )


def recover(path: str | Path) -> tuple[int, int, Path]:
    """Copy every intact entry of a damaged outbox into a fresh file at `path`.

    The damaged file (and its -wal) is renamed `<path>.corrupt-<utc time>`.
    Returns (entries recovered, entries lost, where the damaged file went).
    """
    p = Path(path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = p.with_name(f"{p.name}.corrupt-{stamp}")
    os.replace(p, aside)
    for suffix in ("-wal", "-shm"):
        side = p.with_name(p.name + suffix)
        if side.exists():
            os.replace(side, aside.with_name(aside.name + suffix))
    _trim_header(aside)
    fresh = connect_file(p)
    fresh.executescript(SCHEMA)
    fresh.execute("INSERT INTO counters VALUES ('format', ?)", (FORMAT_VERSION,))
    kept = lost = 0
    try:
        old = sqlite3.connect(aside)  # read-write: a WAL file needs its -shm
    except sqlite3.DatabaseError:
        fresh.close()
        return 0, 0, aside
    try:
        seqs = _salvage_seqs(old)
        for seq in seqs:
            try:
                row = old.execute(
                    "SELECT seq, created, class, rows, ts_min, ts_max, crc, body "
                    "FROM entries WHERE seq = ?",
                    (seq,),
                ).fetchone()
            except sqlite3.DatabaseError:
                lost += 1
                continue
            if row is None:
                continue  # confirmed and deleted before the damage: nothing lost
            if zlib.crc32(row[7]) != row[6]:
                lost += 1
                continue
            fresh.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            kept += 1
        for table in ("stream_names", "vehicle_names", "dead_letters"):
            try:
                kept_rows = old.execute(f"SELECT * FROM {table}").fetchall()
            except sqlite3.DatabaseError:
                continue  # an entry whose names are lost is quarantined when it is taken
            for values in kept_rows:
                marks = ", ".join("?" * len(values))
                fresh.execute(f"INSERT OR IGNORE INTO {table} VALUES ({marks})", values)
        try:
            # the format too: entries of an older format stay refused, never misread
            for name, value in old.execute("SELECT name, value FROM counters"):
                fresh.execute("INSERT OR REPLACE INTO counters VALUES (?, ?)", (name, value))
        except sqlite3.DatabaseError:
            pass  # the counters are figures, not data
        if lost:
            fresh.execute(
                "INSERT INTO counters VALUES ('corrupt_entries', ?) ON CONFLICT(name) "
                "DO UPDATE SET value = value + excluded.value",
                (lost,),
            )
    finally:
        old.close()
        fresh.close()
    return kept, lost, aside


def _trim_header(path: Path) -> None:
    """Make a truncated file's header agree with its length.

    SQLite trusts the page count in the header (bytes 28-31); when the tail of
    the file is gone every query fails, even for rows on pages that survived.
    Cutting the file to whole pages and writing the real count lets the intact
    rows be read again.
    """
    with path.open("r+b") as fh:
        head = fh.read(100)
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            return
        page = int.from_bytes(head[16:18], "big") or 65536
        size = fh.seek(0, os.SEEK_END)
        pages = size // page
        if pages < int.from_bytes(head[28:32], "big"):
            fh.truncate(pages * page)
            fh.seek(28)
            fh.write(pages.to_bytes(4, "big"))


def _salvage_seqs(old: sqlite3.Connection) -> list[int]:
    """Every seq the damaged file still lists, read as far as the damage allows."""
    seqs: list[int] = []
    try:
        for (seq,) in old.execute("SELECT seq FROM entries ORDER BY seq"):
            seqs.append(seq)
    except sqlite3.DatabaseError:
        # the index is damaged part-way: probe onward from the last seq read
        last = seqs[-1] if seqs else 0
        try:
            (top,) = old.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'entries'"
            ).fetchone()
        except (sqlite3.DatabaseError, TypeError):
            top = last + 100_000
        seqs.extend(range(last + 1, int(top) + 1))
    return seqs


# -- CLI -----------------------------------------------------------------------------

_EXAMPLES = """\
examples:
  gateway outbox stats -c config/gateway.example.toml
  gateway outbox stats                     every outbox in var/outbox/
  gateway outbox stats var/outbox/outbox-postgres.sqlite
  gateway outbox stats var/outbox/*.sqlite --json
  gateway outbox recover var/outbox/outbox-postgres.sqlite

stats reads the file while the gateway runs. recover is for an outbox that
the gateway refused at start: it copies the intact entries into a fresh file
and keeps the damaged one beside it as <file>.corrupt-<time>.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "outbox",
        help="inspect or recover the durable outbox",
        description="Inspect or recover the durable outbox files.",
        epilog=_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    cmds = parser.add_subparsers(dest="outbox_command", metavar="COMMAND", required=True)
    stats = cmds.add_parser(
        "stats",
        help="depth, age of the oldest entry, bytes, what was shed",
        description="Show depth, age of the oldest entry, bytes and what was shed.",
        epilog=_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    stats.add_argument(
        "paths", nargs="*", help="outbox files (default: those of -c FILE, or var/outbox/*.sqlite)"
    )
    stats.add_argument("-c", "--config", help="the gateway's TOML file: its sinks' outboxes")
    stats.add_argument("--json", action="store_true", help="one JSON object per file")
    stats.set_defaults(func=_stats_command)
    rec = cmds.add_parser(
        "recover",
        help="salvage the intact entries of a damaged outbox",
        description="Copy the intact entries of a damaged outbox into a fresh file.",
        epilog=_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    rec.add_argument("path", help="the damaged outbox file")
    rec.set_defaults(func=_recover_command)


def _outbox_paths(args: argparse.Namespace) -> list[str]:
    if args.paths:
        return list(args.paths)
    if args.config:
        from gateway.registry import SINKS  # noqa: PLC0415 - the app layer, only for -c
        from gateway.settings import load_settings  # noqa: PLC0415

        settings = load_settings(args.config)
        durable = [p.name for p in settings.sinks if SINKS[p.type].durable]
        return [str(settings.outbox.path_for(name)) for name in durable]
    return sorted(str(p) for p in Path(OutboxSettings().directory).glob("outbox-*.sqlite"))


def _stats_command(args: argparse.Namespace) -> int:
    status = 0
    paths = _outbox_paths(args)
    if not paths:
        print(
            f"gateway outbox stats: no outbox in {OutboxSettings().directory}/; "
            "name the files, or give the gateway's config with -c FILE",
            file=sys.stderr,
        )
        return 1
    for path in paths:
        try:
            s = read_stats(path)
        except OutboxError as err:
            print(f"gateway outbox stats: {err}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(msgspec.json.encode({"path": path, **dataclasses.asdict(s)}).decode())
            continue
        print(
            f"{path}\n"
            f"  depth          {s.entries} entries, {s.rows} rows\n"
            f"  oldest         {_age(s.oldest_age_s)}\n"
            f"  stored         {s.stored_bytes} bytes\n"
            f"  shed           {s.shed_rows} rows in {s.shed_entries} entries (disk quota)\n"
            f"  corrupt        {s.corrupt_entries} entries quarantined\n"
            f"  dead letters   {s.dead_entries} entries, {s.dead_rows} rows set aside "
            "(refused by the sink, or their write kept failing)\n"
            f"  accepted       {s.accepted_rows} rows since the file was made"
        )
    return status


def _age(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _recover_command(args: argparse.Namespace) -> int:
    try:
        kept, lost, aside = recover(args.path)
    except OSError as err:
        print(f"gateway outbox recover: {err}", file=sys.stderr)
        return 1
    print(f"recovered {kept} entries, lost {lost}; the damaged file is kept as {aside}")
    return 0 if not lost else 3
