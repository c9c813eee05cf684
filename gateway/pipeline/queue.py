"""A FIFO of bundles bounded in bytes, with backpressure.

`put` waits while the queue holds more than `max_bytes`, so a source that
outruns its sink slows down instead of growing memory without bound. One
bundle larger than the whole bound is still accepted into an empty queue,
so nothing can deadlock on size alone.

Delivery takes a bundle, writes it, then calls `confirm` (written),
`release` (the sink is down: the bundle goes back to the front and is taken
again later) or `fail` (refused for good, or the write raised an error that is
not an outage: retried a few times, then dropped and counted; the outbox sets
such entries aside on disk instead). The durable outbox
(`gateway.pipeline.outbox.Outbox`) has the same surface, keeps what it holds
on disk, and serves live data before a backlog; `gateway.parts.PipelineQueue` is that seam.
"""

from __future__ import annotations

import asyncio
import collections

from gateway.bundle import Bundle
from gateway.logs import get_logger
from gateway.parts import QueueClosed

log = get_logger("gateway.queue")

MAX_ATTEMPTS = 3  # failed writes (not outages) before a bundle in memory is dropped


class BundleQueue:
    durable = False

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._items: collections.deque[Bundle] = collections.deque()
        self._bytes = 0
        self._rows = 0
        self._closed = False
        self._changed = asyncio.Condition()
        self._leased: Bundle | None = None  # taken, neither confirmed nor released
        self._failures = 0  # of the bundle at the front, by writes that were not outages
        self.dropped_rows = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, bundle: Bundle) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._closed or not self._items or self._bytes < self.max_bytes
            )
            if self._closed:
                raise QueueClosed("the pipeline is shutting down")
            self._items.append(bundle)
            self._bytes += bundle.nbytes
            self._rows += len(bundle)
            self._changed.notify_all()

    async def take(self, max_rows: int, max_wait: float) -> Bundle | None:
        """Merge queued bundles up to `max_rows` rows.

        Waits for the first bundle, then up to `max_wait` seconds for more
        until `max_rows` is reached. Returns None once closed and empty.
        """
        loop = asyncio.get_running_loop()
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or bool(self._items))
            deadline = loop.time() + max_wait
            while not self._closed and self._rows < max_rows:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    break
            if not self._items:
                return None
            taken: list[Bundle] = []
            rows = 0
            while self._items and (not taken or rows + len(self._items[0]) <= max_rows):
                bundle = self._items.popleft()
                taken.append(bundle)
                rows += len(bundle)
                self._bytes -= bundle.nbytes
                self._rows -= len(bundle)
            self._changed.notify_all()
            self._leased = Bundle.merge(taken)
            return self._leased

    async def confirm(self) -> None:
        """The taken bundle was written: forget it."""
        self._leased = None
        self._failures = 0

    async def fail(self, reason: str, *, final: bool) -> None:
        """The write failed, not for an outage: drop the bundle when `final` or
        after MAX_ATTEMPTS, else put it back."""
        self._failures += 1
        if final or self._failures >= MAX_ATTEMPTS:
            bundle, self._leased = self._leased, None
            self._failures = 0
            rows = len(bundle) if bundle is not None else 0
            self.dropped_rows += rows
            log.error("queue.dropped", rows=rows, reason=reason)
            return
        await self.release()

    async def release(self) -> None:
        """The taken bundle was not written: put it back at the front."""
        bundle, self._leased = self._leased, None
        if bundle is None:
            return
        async with self._changed:
            self._items.appendleft(bundle)
            self._bytes += bundle.nbytes
            self._rows += len(bundle)
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
