"""PostgreSQL binary COPY payloads built from numpy columns, with no Python loop per row.

The format (PostgreSQL docs, "COPY ... BINARY File Format"):

    header   b"PGCOPY\\n\\xff\\r\\n\\0", int32 flags = 0, int32 extension length = 0
    tuple    int16 field count, then per field int32 byte length (-1 = NULL) and the bytes
    trailer  int16 -1

All integers are big-endian. Every field here is fixed-size, so a tuple is one
row of a numpy structured big-endian dtype, and a batch is that array's bytes.
Rows whose NULL pattern differs have a different layout; they are grouped by
pattern (COPY does not care about row order), one structured array per group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"

# timestamptz on the wire: int64 microseconds since 2000-01-01 00:00 UTC
PG_EPOCH_US = 946_684_800 * 1_000_000

INT2 = np.dtype(">i2")
INT4 = np.dtype(">i4")
INT8 = np.dtype(">i8")
FLOAT4 = np.dtype(">f4")
FLOAT8 = np.dtype(">f8")


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """One field: its values, the big-endian wire dtype, and which rows are NULL."""

    values: NDArray[Any]
    wire: np.dtype[Any]
    null: NDArray[np.bool_] | None = None


def timestamptz(ts_ns: NDArray[np.int64]) -> NDArray[np.int64]:
    """ns since the Unix epoch -> the wire form of timestamptz (µs since 2000-01-01)."""
    return ts_ns // 1000 - PG_EPOCH_US


def nan_is_null(values: NDArray[np.floating[Any]]) -> NDArray[np.bool_] | None:
    mask = np.isnan(values)
    return mask if bool(mask.any()) else None


def encode_rows(columns: Sequence[Column]) -> bytes:
    """A complete binary COPY payload (header, tuples, trailer) for the columns."""
    if not columns:
        raise ValueError("encode_rows needs at least one column")
    n = len(columns[0].values)
    for col in columns:
        if len(col.values) != n or (col.null is not None and len(col.null) != n):
            raise ValueError("all columns and null masks must have the same length")
    nullable = [i for i, c in enumerate(columns) if c.null is not None]
    if not nullable:
        return HEADER + _tuples(columns, None, frozenset()) + TRAILER
    pattern = np.zeros(n, np.int64)
    for bit, i in enumerate(nullable):
        mask = columns[i].null
        assert mask is not None
        pattern |= mask.astype(np.int64) << bit
    parts = [HEADER]
    for code in np.unique(pattern).tolist():
        nulls = frozenset(i for bit, i in enumerate(nullable) if code >> bit & 1)
        rows = np.flatnonzero(pattern == code)
        parts.append(_tuples(columns, rows, nulls))
    parts.append(TRAILER)
    return b"".join(parts)


def _tuples(
    columns: Sequence[Column], rows: NDArray[np.intp] | None, nulls: frozenset[int]
) -> bytes:
    fields: list[tuple[str, np.dtype[Any]]] = [("count", INT2)]
    for i, col in enumerate(columns):
        fields.append((f"len{i}", INT4))
        if i not in nulls:
            fields.append((f"val{i}", col.wire))
    n = len(columns[0].values) if rows is None else len(rows)
    out = np.empty(n, dtype=np.dtype(fields))
    out["count"] = len(columns)
    for i, col in enumerate(columns):
        if i in nulls:
            out[f"len{i}"] = -1
        else:
            out[f"len{i}"] = col.wire.itemsize
            out[f"val{i}"] = col.values if rows is None else col.values[rows]
    return out.tobytes()
