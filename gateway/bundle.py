"""A bundle: everything one flush carries from the inputs to a sink.

Sources emit bundles; the pipeline merges them by size and time and hands one
bundle to each sink, which writes all of its parts in one transaction. The
durable outbox stores bundles, so one sequence number covers one write.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from gateway.batch import AggregateBatch, FixBatch, ReadingBatch
from gateway.events import Alert, Event, Reject

_EVENT_BYTES = 256  # rough in-memory size of one small frozen value, for the byte bound


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Bundle:
    readings: ReadingBatch = dataclasses.field(default_factory=ReadingBatch.empty)
    fixes: FixBatch = dataclasses.field(default_factory=FixBatch.empty)
    aggregates: AggregateBatch = dataclasses.field(default_factory=AggregateBatch.empty)
    events: tuple[Event, ...] = ()
    alerts: tuple[Alert, ...] = ()
    rejects: tuple[Reject, ...] = ()
    # False for data a unit buffered and sent late (AIS-140 history packets): stored, but
    # stages that raise live alerts pass it by
    live: bool = True

    def __len__(self) -> int:
        return (
            len(self.readings)
            + len(self.fixes)
            + len(self.aggregates)
            + len(self.events)
            + len(self.alerts)
            + len(self.rejects)
        )

    @property
    def nbytes(self) -> int:
        small = len(self.events) + len(self.alerts)
        return (
            self.readings.nbytes
            + self.fixes.nbytes
            + self.aggregates.nbytes
            + small * _EVENT_BYTES
            + sum(_EVENT_BYTES + len(r.payload) for r in self.rejects)
        )

    @classmethod
    def merge(cls, bundles: Sequence[Bundle]) -> Bundle:
        if len(bundles) == 1:
            return bundles[0]
        return cls(
            readings=ReadingBatch.concat([b.readings for b in bundles if len(b.readings)]),
            fixes=FixBatch.concat([b.fixes for b in bundles if len(b.fixes)]),
            aggregates=AggregateBatch.concat([b.aggregates for b in bundles if len(b.aggregates)]),
            events=tuple(e for b in bundles for e in b.events),
            alerts=tuple(a for b in bundles for a in b.alerts),
            rejects=tuple(r for b in bundles for r in b.rejects),
            live=all(b.live for b in bundles),
        )
