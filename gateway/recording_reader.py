"""A recording read back (docs/recording.md), one bundle at a time.

    bundles.csv row: seq, emitted_at, source, live, readings=R, fixes=F, events=E, rejects=J
        --> the next R lines of readings.csv, F of fixes.csv, E of events.jsonl, J of
            rejects.jsonl --> one Bundle, as the source emitted it

The files are streamed side by side, so a recording of any length replays in the
memory of its largest bundle. A last line without its newline (a kill, a full disk)
is not read, and a bundle whose rows run out is left out (`truncated`); any other
malformed line is an error naming the file and the line.
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from gateway.batch import FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Event, Reject
from gateway.recording_files import FORMAT, HEADERS, VERSION
from gateway.streams import StreamRegistry

_TAIL = 65536  # bytes read back from the end at a time, looking for the last newline


class RecordingReadError(ValueError):
    """The folder is not a recording this version can read, or a file in it is damaged."""


def parse_iso(text: list[str], where: str) -> NDArray[np.int64]:
    """The recorder's times (ISO 8601, ns, offset Z) back to ns UTC."""
    for t in text:
        if not t.endswith("Z"):
            raise RecordingReadError(f"{where}: time {t!r} is not UTC (...Z)")
    try:
        return np.asarray([t[:-1] for t in text], "datetime64[ns]").astype(np.int64)
    except ValueError as err:
        raise RecordingReadError(f"{where}: a time is not ISO 8601: {err}") from err


class _Complete(io.RawIOBase):
    """A file up to its last newline: a line cut short at the end (a kill, a full disk)
    is not there. Reads in blocks, so csv and json parse at C speed."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "rb")  # noqa: SIM115 - closed by close()
        pos = self._raw.seek(0, os.SEEK_END)
        self._end = 0
        while pos > 0:
            step = min(_TAIL, pos)
            pos -= step
            self._raw.seek(pos)
            last = self._raw.read(step).rfind(b"\n")
            if last >= 0:
                self._end = pos + last + 1
                break
        self._raw.seek(0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        room = self._end - self._raw.tell()
        view = memoryview(buffer)
        return self._raw.readinto(view[: max(0, min(len(view), room))])

    def close(self) -> None:
        self._raw.close()
        super().close()


def _text(path: Path) -> IO[str] | None:
    if not path.exists():
        return None
    return io.TextIOWrapper(io.BufferedReader(_Complete(path)), encoding="utf-8", newline="")


class _Table:
    """One of the CSV files, read a bundle's rows at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.width = len(HEADERS[path.name])
        self._fh = _text(path)
        self._reader = csv.reader(self._fh if self._fh is not None else ())
        self.line = 0
        header = next(self._reader, None)  # None: created, killed before the first flush
        if header is not None and header != list(HEADERS[path.name]):
            raise RecordingReadError(
                f"{path}: line 1: header must be {','.join(HEADERS[path.name])}"
            )

    def take(self, n: int) -> list[list[str]] | None:
        """The next `n` rows as columns; None if the file ends first."""
        if not n:
            return [[] for _ in range(self.width)]
        rows = list(itertools.islice(self._reader, n))
        self.line = self._reader.line_num
        if set(map(len, rows)) - {self.width}:
            first = next(r for r in rows if len(r) != self.width)
            at = self.line - len(rows) + rows.index(first) + 1
            raise RecordingReadError(
                f"{self.path}: line {at}: {len(first)} fields, not {self.width}"
            )
        if len(rows) < n:
            return None
        return [list(c) for c in zip(*rows, strict=True)]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class _Lines:
    """One of the JSON Lines files, read a bundle's objects at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.line = 0
        self._fh = _text(path)
        self._it: Iterator[str] = iter(self._fh if self._fh is not None else ())

    def take(self, n: int) -> list[dict[str, Any]] | None:
        out: list[dict[str, Any]] = []
        for line in itertools.islice(self._it, n):
            self.line += 1
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RecordingReadError(f"{self.path}: line {self.line}: {err}") from err
        return out if len(out) == n else None

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RecordingReadError(
            f"{directory} is not a recording (no manifest.json); make one with "
            "gateway run -c FILE --record DIR"
        ) from err
    except json.JSONDecodeError as err:
        raise RecordingReadError(f"{path}: not JSON: {err}") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise RecordingReadError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"this gateway reads {FORMAT!r} version {VERSION}"
        )
    return manifest


class RecordingReader:
    """Iterate a recording's bundles in emit order: (emitted_at ns, Bundle)."""

    def __init__(self, directory: Path, registry: StreamRegistry | None = None) -> None:
        self.directory = directory
        self.manifest = load_manifest(directory)
        self.registry = registry if registry is not None else StreamRegistry()
        for s in self.manifest.get("streams", []):
            self.registry.register(s["name"], s.get("unit", ""), s.get("kind", ""))
        self.truncated = False  # set once a bundle's rows ran out

    def __iter__(self) -> Iterator[tuple[int, Bundle]]:
        d = self.directory
        heads = _Table(d / "bundles.csv")
        readings, fixes = _Table(d / "readings.csv"), _Table(d / "fixes.csv")
        events, rejects = _Lines(d / "events.jsonl"), _Lines(d / "rejects.jsonl")
        try:
            while (head := heads.take(1)) is not None:
                _, (emitted,), _, (live,), *counts = head
                nr, nf, ne, nj = (int(c[0]) for c in counts)
                r, f = readings.take(nr), fixes.take(nf)
                e, j = events.take(ne), rejects.take(nj)
                if r is None or f is None or e is None or j is None:
                    self.truncated = True
                    return
                bundle = Bundle(
                    readings=self._readings(r, readings),
                    fixes=self._fixes(f, fixes),
                    events=tuple(_event(x, events) for x in e),
                    rejects=tuple(_reject(x, rejects) for x in j),
                    live=live == "1",
                )
                yield int(parse_iso([emitted], f"bundles.csv line {heads.line}")[0]), bundle
        finally:
            for t in (heads, readings, fixes, events, rejects):
                t.close()

    def _readings(self, cols: list[list[str]], table: _Table) -> ReadingBatch:
        ts_t, stream_t, value_t, quality_t = cols
        where = f"{table.path} near line {table.line}"
        ids = {name: self.registry.register(name) for name in set(stream_t)}
        try:
            return ReadingBatch(
                parse_iso(ts_t, where),
                np.asarray([ids[n] for n in stream_t], np.int32),
                np.asarray(value_t, np.float64),
                np.asarray(quality_t, np.int64).astype(np.uint8),
            )
        except ValueError as err:
            raise RecordingReadError(f"{where}: {err}") from err

    def _fixes(self, cols: list[list[str]], table: _Table) -> FixBatch:
        ts_t, veh_t, lat_t, lon_t, speed_t, heading_t, fix_t = cols
        where = f"{table.path} near line {table.line}"
        vehicles = self.registry.vehicles
        try:
            return FixBatch(
                parse_iso(ts_t, where),
                np.asarray([vehicles.intern(v) for v in veh_t], np.int32),
                np.asarray(lat_t, np.float64),
                np.asarray(lon_t, np.float64),
                np.asarray(speed_t, np.float64).astype(np.float32),
                np.asarray(heading_t, np.float64).astype(np.float32),
                np.asarray(fix_t, np.int64).astype(np.uint8),
            )
        except ValueError as err:
            raise RecordingReadError(f"{where}: {err}") from err


def _event(e: dict[str, Any], lines: _Lines) -> Event:
    where = f"{lines.path} near line {lines.line}"
    try:
        ts = int(parse_iso([e["ts"]], where)[0])
        return Event(ts, e["asset"], e["kind"], e.get("message", ""), e.get("data") or {})
    except (KeyError, TypeError, ValueError) as err:
        raise RecordingReadError(f"{where}: not an event ({err})") from err


def _reject(j: dict[str, Any], lines: _Lines) -> Reject:
    where = f"{lines.path} near line {lines.line}"
    try:
        ts = int(parse_iso([j["ts"]], where)[0])
        payload = base64.b64decode(j.get("payload_b64", ""), validate=True)
        return Reject(ts, j["source"], j["reason"], j.get("detail", ""), payload)
    except (KeyError, TypeError, ValueError) as err:  # binascii.Error is a ValueError
        raise RecordingReadError(f"{where}: not a reject ({err})") from err
