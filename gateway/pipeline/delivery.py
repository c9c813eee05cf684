"""Delivery: move bundles from a queue into one sink, retrying with backoff.

    sources --put--> BundleQueue --take (size/time)--> Delivery --write--> Sink
                         ^                                 |
                         +------ backpressure -------------+ (sink down: queue fills, put waits)

A bundle is taken from the queue, written, and confirmed once the sink has
it. When the sink is down it is released back to the queue and taken again
after a backoff, so with the durable outbox each retry picks the freshest data
first. With the in-memory queue, the queue fills to its byte bound while the
sink is down and sources wait; with the outbox, bundles go to disk instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from gateway.backoff import Backoff
from gateway.bundle import Bundle
from gateway.logs import get_logger
from gateway.parts import PipelineQueue, Sink, SinkRejected, SinkUnavailable

log = get_logger("gateway.delivery")


@dataclasses.dataclass(slots=True)
class DeliveryStats:
    rows_written: int = 0
    bundles_written: int = 0
    write_failures: int = 0
    rows_rejected: int = 0
    rows_abandoned: int = 0  # still undelivered when the shutdown deadline passed
    up: bool = True
    last_error: str = ""
    last_write_s: float = 0.0


class Delivery:
    def __init__(
        self,
        sink: Sink,
        queue: PipelineQueue,
        *,
        max_rows: int = 50_000,
        max_wait: float = 1.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.sink = sink
        self.queue = queue
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.backoff = backoff or Backoff()
        self.stats = DeliveryStats()
        self._drain_deadline: float | None = None

    def stop(self, drain_timeout: float) -> None:
        """Give pending writes `drain_timeout` seconds after the queue closes."""
        self._drain_deadline = time.monotonic() + drain_timeout

    async def run(self) -> None:
        attempt = 0
        while True:
            if self.queue.durable and self._past_deadline():
                self._leave_on_disk()
                return
            bundle = await self.queue.take(self.max_rows, self.max_wait)
            if bundle is None:
                return
            written = await self._attempt(bundle)
            if written is None:
                continue
            if written:
                await self.queue.confirm()
                attempt = 0
                continue
            await self.queue.release()
            if self._past_deadline():
                if self.queue.durable:
                    self._leave_on_disk()
                else:
                    self._abandon()
                return
            await asyncio.sleep(self._next_delay(attempt))
            attempt += 1

    def _abandon(self) -> None:
        abandoned = self.queue.rows
        self.stats.rows_abandoned += abandoned
        log.error(
            "delivery.abandoned",
            sink=self.sink.name,
            rows=abandoned,
            reason="sink still unavailable at the shutdown deadline",
        )

    def _leave_on_disk(self) -> None:
        if self.queue.rows:
            log.warning(
                "delivery.retained",
                sink=self.sink.name,
                rows=self.queue.rows,
                reason="shutdown deadline passed; the outbox keeps them for the next start",
            )

    async def recover(self, err: Exception) -> None:
        """The supervisor's hook after a write raised `err`: the queue retries the
        bundle, then sets it aside, so the next run does not block behind it."""
        self.stats.write_failures += 1
        self.stats.last_error = f"{type(err).__name__}: {err}"
        await self.queue.fail(
            f"{self.sink.name} write failed: {self.stats.last_error}", final=False
        )

    async def _attempt(self, bundle: Bundle) -> bool | None:
        """One write: True once written, False when the sink is down (the bundle
        is to be released), None when the queue has already settled it."""
        started = time.perf_counter()
        try:
            await self.sink.write(bundle)
        except SinkUnavailable as err:
            self.stats.write_failures += 1
            self.stats.last_error = str(err)
            if self.stats.up:
                self.stats.up = False
                log.warning("sink.down", sink=self.sink.name, error=str(err))
            return False
        except SinkRejected as err:
            self.stats.rows_rejected += len(bundle)
            log.error("sink.rejected", sink=self.sink.name, rows=len(bundle), error=str(err))
            await self.queue.fail(f"refused by {self.sink.name}: {err}", final=True)
            return None
        self.stats.last_write_s = time.perf_counter() - started
        self.stats.rows_written += len(bundle)
        self.stats.bundles_written += 1
        if not self.stats.up:
            self.stats.up = True
            log.info("sink.up", sink=self.sink.name, failures=self.stats.write_failures)
        return True

    def _past_deadline(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() >= self._drain_deadline

    def _next_delay(self, attempt: int) -> float:
        delay = self.backoff.delay(attempt)
        if self._drain_deadline is not None:
            delay = max(0.0, min(delay, self._drain_deadline - time.monotonic()))
        return delay
