"""The one-minute aggregation, a stage of its own and always on: every stream's readings
(water meters, bus CAN signals, health) become `aggregates_1m` rows.

    Bundle.readings --kernels.aggregate (per stream, per minute)--> AggregateBatch, closed minutes

A minute is emitted when its stream's first reading of a later minute arrives, so
only closed buckets go out; readings flagged bad (comm, timeout, CRC, exception)
are left out of the figures. State is two arrays, grown as streams are registered.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gateway.analytics import kernels
from gateway.batch import AggregateBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.parts import Wiring
from gateway.streams import StreamRegistry

NS_PER_MIN = 60_000_000_000
_BAD = 15  # Quality COMM_ERROR | TIMEOUT | CRC_ERROR | DEVICE_EXCEPTION


class AggregateStage:
    def __init__(self, registry: StreamRegistry) -> None:
        self.registry = registry
        self._si, self._sf = kernels.new_aggregate_state(len(registry))

    @classmethod
    def create(cls, wiring: Wiring) -> AggregateStage:
        return cls(wiring.registry)

    @staticmethod
    def warm_up() -> None:
        kernels.warm_up()

    def process(self, bundle: Bundle) -> Bundle:
        if not len(bundle.readings):
            return bundle
        aggregates = self.aggregate(bundle.readings.sorted_by_time())
        if not len(aggregates):
            return bundle
        return dataclasses.replace(
            bundle,
            aggregates=AggregateBatch.concat(
                [b for b in (bundle.aggregates, aggregates) if len(b)]
            ),
        )

    def aggregate(self, r: ReadingBatch) -> AggregateBatch:
        """The minutes these readings (sorted by ts) close."""
        self._grow()
        n = len(r)
        out_ts = np.empty(n, np.int64)
        out_stream = np.empty(n, np.int32)
        out_count = np.empty(n, np.int32)
        out_f = np.empty((n, 5), np.float64)
        value = np.where(r.quality & _BAD, np.nan, r.value)
        k = kernels.aggregate(
            r.ts, r.stream, value, NS_PER_MIN, self._si, self._sf,
            out_ts, out_stream, out_count, out_f,
        )  # fmt: skip
        return AggregateBatch(
            out_ts[:k], out_stream[:k], out_count[:k],
            *(out_f[:k, j].copy() for j in range(5)),
        )  # fmt: skip

    def _grow(self) -> None:
        n, have = len(self.registry), self._si.shape[0]
        if n > have:
            si, sf = kernels.new_aggregate_state(n)
            si[:have], sf[:have] = self._si, self._sf
            self._si, self._sf = si, sf
