"""How a bundle is stored in the outbox: up to two msgpack bodies, by class.

    Bundle --encode_parts--> [(KEEP, rows, ts_min, ts_max, body), (RAW, ...)]
    body --decode_body--> Bundle

Columns are stored as the raw bytes of their numpy arrays, so encoding a batch
costs one copy per column and no Python object per reading. `raw` holds
readings, fixes and rejects, which the disk quota may shed; `keep` holds
aggregates, events and alerts, which are never shed.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from gateway.batch import AggregateBatch, FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, AlertState, Event, Reject, Severity


class EntryClass(enum.IntEnum):
    KEEP = 0
    RAW = 1


def _plain(value: Any) -> Any:
    """Evidence and event data as msgpack-able builtins (numpy scalars and arrays too)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    return str(value)


def _columns(batch: ReadingBatch | FixBatch | AggregateBatch) -> list[bytes]:
    return [np.ascontiguousarray(c).tobytes() for c in batch.columns()]


def _batch(kind: type[Any], cols: Sequence[bytes]) -> Any:
    dtypes = list(kind.DTYPES.values())
    return kind(*(np.frombuffer(b, dtype=d) for b, d in zip(cols, dtypes, strict=True)))


def _alert_dict(a: Alert) -> dict[str, Any]:
    d = {f.name: getattr(a, f.name) for f in dataclasses.fields(a)}
    d["severity"] = int(a.severity)
    d["state"] = a.state.value
    d["evidence"] = _plain(a.evidence)
    return d


def encode_parts(bundle: Bundle) -> list[tuple[EntryClass, int, int | None, int | None, bytes]]:
    """A bundle as up to two entry bodies: (class, rows, ts_min, ts_max, body)."""
    out: list[tuple[EntryClass, int, int | None, int | None, bytes]] = []
    raw: dict[str, Any] = {}
    keep: dict[str, Any] = {}
    if len(bundle.readings):
        raw["r"] = _columns(bundle.readings)
    if len(bundle.fixes):
        raw["f"] = _columns(bundle.fixes)
    if bundle.rejects:
        raw["x"] = [[x.ts, x.source, x.reason, x.detail, x.payload] for x in bundle.rejects]
    if len(bundle.aggregates):
        keep["a"] = _columns(bundle.aggregates)
    if bundle.events:
        keep["e"] = [[e.ts, e.asset, e.kind, e.message, _plain(e.data)] for e in bundle.events]
    if bundle.alerts:
        keep["al"] = [_alert_dict(a) for a in bundle.alerts]
    for cls, part in ((EntryClass.RAW, raw), (EntryClass.KEEP, keep)):
        if not part:
            continue
        rows = 0
        spans: list[int] = []
        if "r" in part:
            rows += len(bundle.readings)
            spans += [int(bundle.readings.ts.min()), int(bundle.readings.ts.max())]
        if "f" in part:
            rows += len(bundle.fixes)
            spans += [int(bundle.fixes.ts.min()), int(bundle.fixes.ts.max())]
        if "a" in part:
            rows += len(bundle.aggregates)
            spans += [int(bundle.aggregates.ts.min()), int(bundle.aggregates.ts.max())]
        rows += len(part.get("x", ())) + len(part.get("e", ())) + len(part.get("al", ()))
        body = msgspec.msgpack.encode(part)
        out.append((cls, rows, min(spans, default=None), max(spans, default=None), body))
    return out


def decode_body(body: bytes) -> Bundle:
    part = msgspec.msgpack.decode(body)
    readings = _batch(ReadingBatch, part["r"]) if "r" in part else ReadingBatch.empty()
    fixes = _batch(FixBatch, part["f"]) if "f" in part else FixBatch.empty()
    aggregates = _batch(AggregateBatch, part["a"]) if "a" in part else AggregateBatch.empty()
    rejects = tuple(Reject(*x) for x in part.get("x", ()))
    events = tuple(Event(*e) for e in part.get("e", ()))
    alerts: list[Alert] = []
    for d in part.get("al", ()):
        d["severity"] = Severity(d["severity"])
        d["state"] = AlertState(d["state"])
        alerts.append(Alert(**d))
    return Bundle(readings, fixes, aggregates, events, tuple(alerts), rejects)


# -- the file ------------------------------------------------------------------------
