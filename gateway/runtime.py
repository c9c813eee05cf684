"""The runtime: one asyncio loop, one TaskGroup, sources in, sinks out.

    Source.run(emit) --+                  stage task, stages in a     +--> Delivery --> Sink
    Source.run(emit) --+--> StageQueue --> worker thread, in order --> +--> Delivery --> Sink
    Source.run(emit) --+    (bounded)     (aggregate, water, vehicle)   one queue per sink

`emit` returns once its bundle has passed the stages and is in every sink's
queue (the durable outbox for the databases), so a source acknowledges its
input only then. The stages run off the event loop (numba kernels release the
GIL), so a slow stage delays no Modbus poll, MQTT keep-alive or acknowledgement
of what is already stored. A stage that raises is a bug: the supervisor logs
it, the bundles it held go on to the sinks as they came (nothing is lost), and
the stage task starts again.

Each source and each delivery runs under the one supervisor, which restarts it
with backoff when it fails, while the others keep running. A delivery whose
write raised (a bug, not an outage) first tells its queue, which retries the
bundle and sets it aside after a few failures, so nothing blocks behind it.
On stop (SIGTERM, SIGINT or the stop event) the sources are cancelled, the
queues are closed and drained into the sinks, the sinks are closed, and `run`
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Literal

from gateway.backoff import Backoff
from gateway.bundle import Bundle
from gateway.logs import get_logger
from gateway.metrics import Measurement
from gateway.parts import PipelineQueue, QueueClosed, Sink, Source, Stage
from gateway.pipeline.delivery import Delivery
from gateway.pipeline.outbox_file import OutboxError
from gateway.pipeline.queue import BundleQueue
from gateway.pipeline.stage_queue import Staged, StageQueue

log = get_logger("gateway.runtime")


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeSettings:
    queue_max_bytes: int = 64 * 1024 * 1024
    batch_max_rows: int = 50_000
    batch_max_seconds: float = 1.0
    drain_timeout: float = 10.0
    restart_backoff: Backoff = dataclasses.field(
        default_factory=lambda: Backoff(initial=1.0, maximum=60.0)
    )
    healthy_after: float = 30.0  # a source that ran this long restarts from the initial delay


@dataclasses.dataclass(slots=True)
class TaskStats:
    restarts: int = 0
    last_error: str = ""


class Runtime:
    def __init__(
        self,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        stages: Sequence[Stage] = (),
        settings: RuntimeSettings = RuntimeSettings(),
        queue_for: Callable[[Sink], PipelineQueue] | None = None,
    ) -> None:
        """`queue_for(sink)` gives each sink its queue, e.g. a durable Outbox;
        by default an in-memory BundleQueue of `settings.queue_max_bytes`."""
        if not sinks:
            raise ValueError("the runtime needs at least one sink")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        self.sources = list(sources)
        self.sinks = list(sinks)
        self.stages = list(stages)
        self.settings = settings
        self.deliveries = [
            Delivery(
                sink,
                queue_for(sink) if queue_for else BundleQueue(settings.queue_max_bytes),
                max_rows=settings.batch_max_rows,
                max_wait=settings.batch_max_seconds,
            )
            for sink in sinks
        ]
        self.source_stats = {s.name: TaskStats() for s in sources}
        self.delivery_stats = {d.sink.name: TaskStats() for d in self.deliveries}
        self.stage_stats = TaskStats()
        self.staging = StageQueue(settings.queue_max_bytes)
        self._held: list[Staged] = []  # taken by the stage task, not yet passed on
        self.rows_emitted = 0

    def measurements(self) -> Iterator[Measurement]:
        yield Measurement(
            "readings_emitted_total", self.rows_emitted, "readings emitted by sources", "counter"
        )
        yield Measurement(
            "stage_restarts_total",
            self.stage_stats.restarts,
            "times a stage raised; its bundles went on to the sinks unstaged",
            "counter",
        )
        yield Measurement("stage_queue_rows", self.staging.rows, "rows waiting for the stages")
        for name, stats in self.source_stats.items():
            yield Measurement(
                "source_restarts_total",
                stats.restarts,
                "times the supervisor restarted a failed source",
                "counter",
                (("source", name),),
            )
        for d in self.deliveries:
            restarts = self.delivery_stats[d.sink.name].restarts
            figures: tuple[tuple[str, float, str, Literal["counter", "gauge"]], ...] = (
                (
                    "delivery_restarts_total",
                    restarts,
                    "times a delivery failed with an error that was not an outage",
                    "counter",
                ),
                ("sink_up", float(d.stats.up), "1 while the sink takes writes", "gauge"),
                ("sink_rows_written_total", d.stats.rows_written, "rows confirmed", "counter"),
                ("sink_write_failures_total", d.stats.write_failures, "failed writes", "counter"),
                (
                    "sink_rows_abandoned_total",
                    d.stats.rows_abandoned,
                    "rows still undelivered at the shutdown deadline",
                    "counter",
                ),
                ("queue_rows", d.queue.rows, "rows waiting for the sink", "gauge"),
                ("queue_bytes", d.queue.nbytes, "bytes waiting for the sink", "gauge"),
            )
            for name, value, text, kind in figures:
                yield Measurement(name, value, text, kind, (("sink", d.sink.name),))

    async def emit(self, bundle: Bundle) -> None:
        if len(bundle):
            await (await self.staging.put(bundle))

    async def _stage(self) -> None:
        """Take what the sources emitted, run the stages off the loop, pass it on."""
        while (items := await self.staging.take(self.settings.batch_max_rows)) is not None:
            self._held = items
            bundle = Bundle.merge([i.bundle for i in items])
            if self.stages:
                bundle = await asyncio.to_thread(self._process, bundle)
            await self._pass_on(bundle)

    def _process(self, bundle: Bundle) -> Bundle:
        for stage in self.stages:
            bundle = stage.process(bundle)
        return bundle

    async def _pass_on(self, bundle: Bundle) -> None:
        """Into every sink's queue, then the emits return; a queue that cannot take
        it (a disk that failed) raises in the emits, so the sources keep their input."""
        items, self._held = self._held, []
        try:
            if len(bundle):
                self.rows_emitted += len(bundle.readings)
                for delivery in self.deliveries:
                    await delivery.queue.put(bundle)
        except (OutboxError, QueueClosed) as err:
            for item in items:
                if not item.done.done():  # a cancelled emit (stop) waits no more
                    item.done.set_exception(err)
            return
        for item in items:
            if not item.done.done():
                item.done.set_result(None)

    def _abandon_staged(self) -> None:
        rows = self.staging.rows + sum(len(i.bundle) for i in self._held)
        log.error(
            "runtime.abandoned",
            rows=rows,
            reason="a sink's memory queue stayed full past the shutdown deadline",
        )
        for delivery in self.deliveries:
            delivery.stats.rows_abandoned += rows

    async def _stage_failed(self, err: Exception) -> None:
        """A stage raised: what it held goes on as the sources emitted it."""
        self.stage_stats.last_error = f"{type(err).__name__}: {err}"
        if self._held:
            await self._pass_on(Bundle.merge([i.bundle for i in self._held]))

    async def run(self, stop: asyncio.Event) -> None:
        for sink in self.sinks:
            await sink.open()
        log.info(
            "runtime.start",
            sources=",".join(s.name for s in self.sources),
            sinks=",".join(s.name for s in self.sinks),
        )
        stopping = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            staging = tg.create_task(
                self._supervise(
                    "stages", self._stage, self.stage_stats, on_failure=self._stage_failed
                ),
                name="stages",
            )
            for delivery in self.deliveries:
                tg.create_task(
                    self._supervise(
                        f"delivery:{delivery.sink.name}",
                        delivery.run,
                        self.delivery_stats[delivery.sink.name],
                        on_failure=delivery.recover,
                        wake=stopping,
                    ),
                    name=f"delivery:{delivery.sink.name}",
                )
            supervised = [
                tg.create_task(
                    self._supervise(
                        f"source:{source.name}",
                        functools.partial(source.run, self.emit),
                        self.source_stats[source.name],
                    ),
                    name=f"source:{source.name}",
                )
                for source in self.sources
            ]
            await stop.wait()
            log.info("runtime.stopping", queued_rows=sum(d.queue.rows for d in self.deliveries))
            for task in supervised:
                task.cancel()
            await asyncio.gather(*supervised, return_exceptions=True)
            await self.staging.close()
            # what the sources emitted goes through the stages first, unless a sink
            # that is down keeps its queue full past the drain deadline
            done, _ = await asyncio.wait([staging], timeout=self.settings.drain_timeout)
            if not done:
                self._abandon_staged()
                staging.cancel()
            stopping.set()
            for delivery in self.deliveries:
                delivery.stop(self.settings.drain_timeout)
                await delivery.queue.close()
        for sink in self.sinks:
            await sink.close()
        log.info(
            "runtime.stopped",
            rows_written=sum(d.stats.rows_written for d in self.deliveries),
            rows_abandoned=sum(d.stats.rows_abandoned for d in self.deliveries),
        )

    async def _supervise(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        stats: TaskStats,
        *,
        on_failure: Callable[[Exception], Awaitable[None]] | None = None,
        wake: asyncio.Event | None = None,
    ) -> None:
        """Run `run` until it returns, restarting it with backoff when it raises.
        `on_failure` settles what the failed run held; `wake` cuts a backoff short."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await run()
            except QueueClosed:
                return
            except Exception as err:  # the one supervisor: one failed part must not stop the rest
                if time.monotonic() - started >= self.settings.healthy_after:
                    attempt = 0
                delay = self.settings.restart_backoff.delay(attempt)
                attempt += 1
                stats.restarts += 1
                stats.last_error = f"{type(err).__name__}: {err}"
                log.error(
                    "task.failed",
                    task=name,
                    error=stats.last_error,
                    restart_in_s=round(delay, 2),
                    exc_info=True,
                )
                if on_failure is not None:
                    await on_failure(err)
                await _sleep(delay, wake)
            else:
                log.info("task.finished", task=name)
                return


async def _sleep(delay: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT, so the runtime drains and exits 0."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
