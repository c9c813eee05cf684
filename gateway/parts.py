"""The interfaces between the gateway's parts, and their rules. Drivers, analytics and sinks
import only the core (batch, bundle, events, streams, config, logs, metrics, backoff) and this
module; the runtime and the composition root (`gateway.build`) put them together.

    Source.run(emit) --Bundle--> Stage.process --Bundle--> PipelineQueue --> Sink.write
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.bundle import Bundle
from gateway.streams import StreamRegistry

Emit = Callable[[Bundle], Awaitable[None]]
"""Hand a bundle to the pipeline. It returns once the bundle is in every sink's queue, so
in the durable outbox when there is one: a source acknowledges its input only after that
(MQTT QoS 1). It waits while the queues are full (backpressure), and raises QueueClosed
when the pipeline is shutting down."""


@dataclasses.dataclass(frozen=True, slots=True)
class Wiring:
    """What the composition root hands every part's factory besides its own settings:

    SomeSource.create(name, settings, wiring) -> Source
    """

    registry: StreamRegistry  # the process's stream and vehicle ids
    gateway_id: str  # this gateway's name in the central database
    # a source that receives raw messages (MQTT) hands each one to this, as received and
    # before decoding: on_raw(topic, payload, received_ns). It must be cheap and not raise
    # (`gateway run --record` keeps a reference and writes it later, in a thread)
    on_raw: Callable[[str, bytes, int], None] | None = None


class Source(Protocol):
    """An input: a driver reading devices or a broker.

    - `run(emit)` runs until cancelled, emitting bundles; it must not return early unless
      its input has ended (a replay).
    - Raising restarts it, with backoff, under the runtime's one supervisor; the other
      parts keep running. Raise a specific error with a message that names the device.
    - It is made by `create(name, settings, wiring)`, which checks its settings (a
      missing profile, an unreadable secret or file) and starts nothing: no task,
      thread, socket or loop. `gateway check-config` calls it for every source.
    """

    name: str

    async def run(self, emit: Emit) -> None: ...


class Stage(Protocol):
    """A step between sources and sinks: aggregation, detectors, vehicle rules.

    - `process(bundle)` returns the bundle to pass on, usually with aggregates, events or
      alerts added. It is synchronous and runs off the event loop, in a task of its own,
      so it may take milliseconds (numba kernels release the GIL); it must not block on
      I/O.
    - It judges data on data time, causally (a sample only on what came before it), so a
      replay gives the field's alerts. It keeps its state in arrays across bundles.
    - A bundle with `live=False` (a unit's buffered history) is stored but raises no live
      alert.
    """

    def process(self, bundle: Bundle) -> Bundle: ...


class Sink(Protocol):
    """An output: a database, a broker, a file.

    - `open()` connects and prepares; it may raise SinkUnavailable and is retried.
    - `write(bundle)` stores every part of the bundle durably in one transaction, or
      raises. Writes are idempotent on natural keys (stream and ts, vehicle and ts, alert
      id), so a retried bundle adds no duplicates.
    - SinkUnavailable: the write may succeed later (connection refused, server
      restarting); the bundle is kept and retried with backoff.
    - SinkRejected: this bundle can never be written as it is; it is set aside (the
      outbox's dead letters), never silently dropped.
    - Any other exception is a bug: the supervisor logs it, retries the bundle alone and
      sets it aside after a few failures.
    """

    name: str

    async def open(self) -> None: ...

    async def write(self, bundle: Bundle) -> None: ...

    async def close(self) -> None: ...


class SinkUnavailable(Exception):
    """The sink cannot take writes now; retry later."""


class SinkRejected(Exception):
    """The sink refuses this bundle for good."""


class QueueClosed(Exception):
    """Raised by `put` (and so by `emit`) after `close`: the pipeline is shutting down."""


class PipelineQueue(Protocol):
    """What a delivery needs from its queue: the in-memory BundleQueue or the durable Outbox.

    `take` leases bundles up to a number of rows; the lease ends with `confirm` (written),
    `release` (the sink is down: taken again later) or `fail` (refused, or the write raised:
    retried alone, then set aside). One lease at a time."""

    durable: bool  # True: what is left at shutdown stays on disk for the next start

    @property
    def rows(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    async def put(self, bundle: Bundle) -> None: ...

    async def take(self, max_rows: int, max_wait: float) -> Bundle | None: ...

    async def confirm(self) -> None: ...

    async def release(self) -> None: ...

    async def fail(self, reason: str, *, final: bool) -> None: ...

    async def close(self) -> None: ...
