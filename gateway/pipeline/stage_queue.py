"""Bundles from the sources on their way to the stages, each with the future its emit awaits.

    Source --emit--> StageQueue (bounded in bytes) --take--> stage task (off the loop)
                                                               --> every sink's queue
                                                               --> the emits' futures resolve

The stage task takes everything queued at once (up to a number of rows), so
bundles that several sources emitted together go through the stages together.
Bundles of a unit's buffered history (`live=False`) are never merged with live
ones: a merged bundle is live only if all its parts are.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses

from gateway.bundle import Bundle
from gateway.parts import QueueClosed


@dataclasses.dataclass(slots=True)
class Staged:
    bundle: Bundle
    done: asyncio.Future[None]  # resolved once the bundle is in every sink's queue


class StageQueue:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._items: collections.deque[Staged] = collections.deque()
        self._bytes = 0
        self._rows = 0
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def nbytes(self) -> int:
        return self._bytes

    async def put(self, bundle: Bundle) -> asyncio.Future[None]:
        """Queue `bundle` (waiting while the queue is full); return the future that
        resolves once the stages passed it on to every sink's queue."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._closed or not self._items or self._bytes < self.max_bytes
            )
            if self._closed:
                raise QueueClosed("the pipeline is shutting down")
            item = Staged(bundle, asyncio.get_running_loop().create_future())
            self._items.append(item)
            self._bytes += bundle.nbytes
            self._rows += len(bundle)
            self._changed.notify_all()
            return item.done

    async def take(self, max_rows: int) -> list[Staged] | None:
        """Everything queued, up to `max_rows` rows, of one liveness; waits for the
        first bundle. None once closed and empty."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or bool(self._items))
            if not self._items:
                return None
            live = self._items[0].bundle.live
            taken: list[Staged] = []
            rows = 0
            while self._items and self._items[0].bundle.live == live:
                item = self._items[0]
                if taken and rows + len(item.bundle) > max_rows:
                    break
                self._items.popleft()
                taken.append(item)
                rows += len(item.bundle)
                self._bytes -= item.bundle.nbytes
                self._rows -= len(item.bundle)
            self._changed.notify_all()
            return taken

    async def close(self) -> None:
        """No more puts; what is queued is still taken."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
