"""Columnar batches: the one data model for readings and GPS fixes.

A batch is a set of parallel numpy arrays, one per column, all the same length.
Drivers produce batches, analytics consume them and sinks write them; no Python
object is made per reading. Slicing returns views, so it costs nothing; boolean
masks and index arrays copy, as numpy does.

    driver --ReadingBatch--> pipeline --ReadingBatch--> sink
                               |
                               +--> analytics (numba kernels over the columns)
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

NS_PER_S = 1_000_000_000


class Quality(enum.IntFlag):
    """Bit flags in the `quality` column; 0 means good."""

    OK = 0
    COMM_ERROR = 1  # no usable reply: link down, device unreachable, port gone
    TIMEOUT = 2  # the device did not answer within its timeout
    CRC_ERROR = 4  # a reply arrived but was corrupt (CRC, framing, garbage)
    DEVICE_EXCEPTION = 8  # the device answered with a Modbus exception
    OUT_OF_RANGE = 16  # decoded, but outside the point's plausible range
    STALE = 32  # the device reports the value has not been refreshed
    SUBSTITUTED = 64  # not measured: estimated or derived by the gateway
    REVERSE_FLOW = 128  # flow against the meter's normal direction

    @classmethod
    def describe(cls, bits: int) -> str:
        """Name the flags set in `bits`, e.g. 'COMM_ERROR|TIMEOUT'."""
        names = [f.name for f in cls if f and bits & f and f.name]
        return "|".join(names) if names else "OK"


BAD = Quality.COMM_ERROR | Quality.TIMEOUT | Quality.CRC_ERROR | Quality.DEVICE_EXCEPTION


class _Columnar:
    """Shared behaviour of columnar batches. Subclasses are frozen slotted
    dataclasses whose fields are the columns, in the order of `DTYPES`."""

    DTYPES: ClassVar[dict[str, np.dtype[Any]]]

    def __post_init__(self) -> None:
        n = -1
        for name, dtype in self.DTYPES.items():
            col = getattr(self, name)
            if not isinstance(col, np.ndarray) or col.dtype != dtype or col.ndim != 1:
                got = getattr(col, "dtype", type(col).__name__)
                kind = type(self).__name__
                raise TypeError(f"{kind}.{name} must be a 1-D {dtype} array, got {got}")
            if n == -1:
                n = len(col)
            elif len(col) != n:
                raise ValueError(
                    f"{type(self).__name__} columns differ in length: "
                    f"{name} has {len(col)}, expected {n}"
                )

    def columns(self) -> tuple[NDArray[Any], ...]:
        return tuple(getattr(self, name) for name in self.DTYPES)

    def __len__(self) -> int:
        return len(getattr(self, next(iter(self.DTYPES))))

    def __getitem__(self, index: slice | NDArray[np.bool_] | NDArray[np.intp]) -> Self:
        if not isinstance(index, slice | np.ndarray):
            raise TypeError("index a batch with a slice, a boolean mask or an index array")
        return type(self)(*(col[index] for col in self.columns()))

    @property
    def nbytes(self) -> int:
        return sum(col.nbytes for col in self.columns())

    @classmethod
    def empty(cls) -> Self:
        return cls(*(np.empty(0, dtype) for dtype in cls.DTYPES.values()))

    @classmethod
    def concat(cls, batches: Sequence[Self]) -> Self:
        """One batch holding `batches` in order; a single batch is returned as is."""
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(*(np.concatenate([getattr(b, name) for b in batches]) for name in cls.DTYPES))

    def sorted_by_time(self) -> Self:
        ts: NDArray[np.int64] = getattr(self, "ts")  # noqa: B009 - every kind has ts
        if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):
            return self
        return self[np.argsort(ts, kind="stable")]

    def time_span(self) -> tuple[int, int] | None:
        ts: NDArray[np.int64] = getattr(self, "ts")  # noqa: B009
        return (int(ts.min()), int(ts.max())) if len(ts) else None


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class ReadingBatch(_Columnar):
    """Readings: one row per (stream, ts). `value` is NaN where the poll failed,
    with the reason in `quality`; a failed poll never repeats the last value."""

    ts: NDArray[np.int64]  # ns since the epoch, UTC
    stream: NDArray[np.int32]  # id from a StreamRegistry
    value: NDArray[np.float64]
    quality: NDArray[np.uint8]  # Quality bit flags

    DTYPES: ClassVar[dict[str, np.dtype[Any]]] = {
        "ts": np.dtype(np.int64),
        "stream": np.dtype(np.int32),
        "value": np.dtype(np.float64),
        "quality": np.dtype(np.uint8),
    }

    @classmethod
    def of(
        cls,
        ts: Sequence[int] | NDArray[Any],
        stream: Sequence[int] | NDArray[Any],
        value: Sequence[float] | NDArray[Any],
        quality: Sequence[int] | NDArray[Any] | None = None,
    ) -> ReadingBatch:
        """Build a batch from anything array-like, converting to the pinned dtypes."""
        v = np.asarray(value, np.float64)
        q = np.zeros(len(v), np.uint8) if quality is None else np.asarray(quality, np.uint8)
        return cls(np.asarray(ts, np.int64), np.asarray(stream, np.int32), v, q)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class FixBatch(_Columnar):
    """GPS fixes: one row per (vehicle, ts)."""

    ts: NDArray[np.int64]  # ns since the epoch, UTC (the unit's GNSS time)
    vehicle: NDArray[np.int32]  # id from an Interner of vehicle ids
    lat: NDArray[np.float64]  # degrees, WGS 84
    lon: NDArray[np.float64]
    speed: NDArray[np.float32]  # m/s; NaN when not reported
    heading: NDArray[np.float32]  # degrees clockwise from true north; NaN when unknown
    fix: NDArray[np.uint8]  # FixQuality

    DTYPES: ClassVar[dict[str, np.dtype[Any]]] = {
        "ts": np.dtype(np.int64),
        "vehicle": np.dtype(np.int32),
        "lat": np.dtype(np.float64),
        "lon": np.dtype(np.float64),
        "speed": np.dtype(np.float32),
        "heading": np.dtype(np.float32),
        "fix": np.dtype(np.uint8),
    }


class FixQuality(enum.IntEnum):
    NONE = 0
    FIX_2D = 2
    FIX_3D = 3
    DEAD_RECKONING = 6


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class AggregateBatch(_Columnar):
    """Per-stream aggregates over fixed intervals (1 minute by default)."""

    ts: NDArray[np.int64]  # ns UTC, start of the interval
    stream: NDArray[np.int32]
    count: NDArray[np.int32]  # good samples in the interval
    min: NDArray[np.float64]
    max: NDArray[np.float64]
    mean: NDArray[np.float64]
    sum: NDArray[np.float64]
    last: NDArray[np.float64]

    DTYPES: ClassVar[dict[str, np.dtype[Any]]] = {
        "ts": np.dtype(np.int64),
        "stream": np.dtype(np.int32),
        "count": np.dtype(np.int32),
        "min": np.dtype(np.float64),
        "max": np.dtype(np.float64),
        "mean": np.dtype(np.float64),
        "sum": np.dtype(np.float64),
        "last": np.dtype(np.float64),
    }
