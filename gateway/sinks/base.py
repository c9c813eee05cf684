"""The seam between the pipeline and storage: a sink writes whole bundles.

A sink raises SinkUnavailable when the write may succeed later (connection
refused, server restarting); the pipeline keeps the bundle and retries. It
raises SinkRejected when the bundle can never be written as it is. Writes are
idempotent (keyed by stream and ts, vehicle and ts, alert id), so a retried
bundle causes no duplicates.
"""

from __future__ import annotations

from typing import Protocol

from gateway.bundle import Bundle


class SinkUnavailable(Exception):
    """The sink cannot take writes now; retry later."""


class SinkRejected(Exception):
    """The sink refuses this bundle for good."""


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Connect and prepare. May raise SinkUnavailable; the runtime retries."""

    async def write(self, bundle: Bundle) -> None:
        """Store the bundle durably, or raise."""

    async def close(self) -> None: ...
