"""The replay CSV, the input contract of `gateway replay`, parsed into columns.

    ts,stream,value[,quality]
    2026-11-28T02:15:00+05:30,dma-01/inlet/flow_lps,12.5      (ISO 8601 with an offset)
    1764288900,dma-01/inlet/flow_lps,12.5                     (or epoch seconds)

Columns are parsed in bulk (numpy), not an object per row downstream. Bad rows
are kept with their line number and reason, so the caller decides whether to
stop at the first or count them (`--skip-bad`).
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.streams import StreamNameError, split_stream_name

_OFFSET = re.compile(r"^(.*?)(Z|[+-]\d{2}:?\d{2})$")
_EPOCH = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")


class ReplayError(ValueError):
    """The input cannot be replayed (missing file, bad header, bad row)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedCsv:
    """The readings of a replay CSV as columns, plus the rows that failed."""

    ts: NDArray[np.int64]
    names: NDArray[np.object_]  # distinct stream names
    name_index: NDArray[np.int64]  # per row, index into names
    value: NDArray[np.float64]
    quality: NDArray[np.uint8]
    line: NDArray[np.int64]  # 1-based line number of each row in the file
    raw: tuple[list[str], list[str], list[str]]  # ts, stream, value text as read
    bad: list[tuple[int, str]]  # (line, reason), in file order


def _parse_ts(text: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """ISO 8601 with offset or epoch seconds to ns UTC; returns (ns, ok)."""
    n = len(text)
    out = np.zeros(n, np.int64)
    ok = np.zeros(n, bool)
    epoch_rows = [i for i, t in enumerate(text) if _EPOCH.match(t)]
    if epoch_rows:
        secs = np.asarray([float(text[i]) for i in epoch_rows])
        good = np.isfinite(secs) & (np.abs(secs) < 9e9)
        idx = np.asarray(epoch_rows)[good]
        out[idx] = np.round(secs[good] * 1e9).astype(np.int64)
        ok[idx] = True
    iso_rows, bases, offsets = [], [], []
    epoch_set = set(epoch_rows)
    for i, t in enumerate(text):
        if i in epoch_set:
            continue
        m = _OFFSET.match(t)
        if not m or len(m.group(1)) < 10:
            continue
        zone = m.group(2)
        minutes = 0 if zone == "Z" else int(zone[1:3]) * 60 + int(zone[-2:])
        iso_rows.append(i)
        bases.append(m.group(1).replace(" ", "T"))
        offsets.append(-minutes if zone.startswith("-") else minutes)
    if iso_rows:
        parsed = np.empty(len(bases), np.int64)
        good = np.ones(len(bases), bool)
        try:
            parsed[:] = np.asarray(bases, "datetime64[ns]").astype(np.int64)
        except ValueError:
            for k, b in enumerate(bases):  # only on the failure path: find the culprits
                try:
                    parsed[k] = np.datetime64(b, "ns").astype(np.int64)
                except ValueError:
                    good[k] = False
        parsed -= np.asarray(offsets, np.int64) * 60_000_000_000
        idx = np.asarray(iso_rows)[good]
        out[idx] = parsed[good]
        ok[idx] = True
    return out, ok


def _parse_floats(text: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    try:
        return np.asarray(text, np.float64), np.ones(len(text), bool)
    except ValueError:
        out = np.full(len(text), np.nan)
        ok = np.ones(len(text), bool)
        for i, t in enumerate(text):
            try:
                out[i] = float(t)
            except ValueError:
                ok[i] = False
        return out, ok


def parse_readings(path: Path) -> ParsedCsv:
    """Read a replay CSV into columns; bad rows are collected, not raised."""
    try:
        fh = open(path, newline="")  # noqa: SIM115 - closed below, read in one pass
    except OSError as err:
        raise ReplayError(f"{path}: cannot read: {err.strerror}") from err
    with fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if header not in (["ts", "stream", "value"], ["ts", "stream", "value", "quality"]):
            raise ReplayError(
                f"{path}: line 1: header must be ts,stream,value[,quality], got {','.join(header)}"
            )
        width = len(header)
        ts_t: list[str] = []
        st_t: list[str] = []
        va_t: list[str] = []
        qu_t: list[str] = []
        lines: list[int] = []
        bad: list[tuple[int, str]] = []
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != width:
                bad.append((line, f"expected {width} columns, got {len(row)}"))
                continue
            ts_t.append(row[0].strip())
            st_t.append(row[1].strip())
            va_t.append(row[2].strip())
            if width == 4:
                qu_t.append(row[3].strip() or "0")
            lines.append(line)
    line_no = np.asarray(lines, np.int64)
    ts, ts_ok = _parse_ts(ts_t)
    value, v_ok = _parse_floats(va_t)
    if qu_t:
        qf, q_ok = _parse_floats(qu_t)
        q_ok &= np.isfinite(qf) & (qf >= 0) & (qf <= 255) & (qf == np.floor(np.nan_to_num(qf)))
        quality = np.where(q_ok, qf, 0).astype(np.uint8)
    else:
        q_ok = np.ones(len(ts_t), bool)
        quality = np.zeros(len(ts_t), np.uint8)
    names, name_index = np.unique(np.asarray(st_t, dtype=object), return_inverse=True)
    name_ok = np.ones(len(names), bool)
    for k, name in enumerate(names):
        try:
            split_stream_name(str(name))
        except StreamNameError:
            name_ok[k] = False
    n_ok = name_ok[name_index] if len(names) else np.ones(0, bool)
    for mask, what in ((ts_ok, "ts"), (v_ok, "value"), (q_ok, "quality"), (n_ok, "stream")):
        for i in np.flatnonzero(~mask):
            field = {"ts": ts_t, "value": va_t, "quality": qu_t, "stream": st_t}[what][i]
            hint = {
                "ts": "ISO 8601 with an offset or epoch seconds",
                "value": "a number",
                "quality": "an integer 0-255",
                "stream": "<asset>/<quantity>",
            }[what]
            bad.append((int(line_no[i]), f"bad {what} {field!r}: expected {hint}"))
    bad.sort()
    keep = ts_ok & v_ok & q_ok & n_ok
    rows = np.flatnonzero(keep)
    used, index = np.unique(name_index[rows], return_inverse=True)  # only names of good rows
    return ParsedCsv(
        ts[rows],
        names[used],
        index.astype(np.int64),
        value[rows],
        quality[rows],
        line_no[rows],
        ([ts_t[i] for i in rows], [st_t[i] for i in rows], [va_t[i] for i in rows]),
        bad,
    )
