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
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from gateway.batch import FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Event, Reject
from gateway.recording_files import FORMAT, HEADERS, VERSION
from gateway.streams import StreamRegistry


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


def _complete(fh: IO[str]) -> Iterator[str]:
    """The lines of `fh` that end in a newline: a line cut short at the end is not one."""
    for line in fh:
        if line.endswith("\n"):
            yield line


class _Table:
    """One of the CSV files, read a bundle's rows at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.width = len(HEADERS[path.name])
        self.line = 1
        self._fh = open(path, newline="", encoding="utf-8") if path.exists() else None  # noqa: SIM115
        self._rows: Iterator[list[str]] = iter(())
        if self._fh is not None:
            self._rows = csv.reader(_complete(self._fh))
            header = next(self._rows, None)  # None: created, killed before the first flush
            if header is not None and header != list(HEADERS[path.name]):
                raise RecordingReadError(
                    f"{path}: line 1: header must be {','.join(HEADERS[path.name])}"
                )

    def take(self, n: int) -> list[list[str]] | None:
        """The next `n` rows as columns; None if the file ends first."""
        rows: list[list[str]] = []
        if not n:
            return [[] for _ in range(self.width)]
        for row in self._rows:
            self.line += 1
            if len(row) != self.width:
                raise RecordingReadError(
                    f"{self.path}: line {self.line}: {len(row)} fields, not {self.width}"
                )
            rows.append(row)
            if len(rows) == n:
                break
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
        self._fh = open(path, encoding="utf-8") if path.exists() else None  # noqa: SIM115
        self._lines: Iterable[str] = _complete(self._fh) if self._fh is not None else ()
        self._it = iter(self._lines)

    def take(self, n: int) -> list[dict[str, Any]] | None:
        out: list[dict[str, Any]] = []
        if not n:
            return out
        for line in self._it:
            self.line += 1
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise RecordingReadError(f"{self.path}: line {self.line}: {err}") from err
            if len(out) == n:
                break
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
