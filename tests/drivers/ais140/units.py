"""Helpers for the source tests: a running Ais140Source on a loopback port, and units."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

from firmware_sim.ais140 import encoder
from gateway.bundle import Bundle
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.drivers.ais140.source import Ais140Source
from gateway.streams import StreamRegistry

IMEIS = [f"8698670363{n:05d}" for n in range(8)]
VEHICLES = {imei: f"MH12-PM-{n + 1:04d}" for n, imei in enumerate(IMEIS)}


def fix(n: int = 0, frame: int = 1, **over: Any) -> encoder.Fix:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    base = encoder.Fix(IMEIS[n], f"MH12PM{n + 1:04d}", now, 18.52 + n / 1000, 73.85, 30.0, 90.0)
    return dataclasses.replace(base, frame=frame, **over)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Waits for `cond`; fails the test after `timeout` (generous: the CI box is shared)."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


class Running:
    def __init__(self, source: Ais140Source) -> None:
        self.source = source
        self.bundles: list[Bundle] = []

    async def emit(self, bundle: Bundle) -> None:
        self.bundles.append(bundle)

    @property
    def port(self) -> int:
        assert self.source.address is not None
        return self.source.address[1]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def rejects(self) -> list[str]:
        return [r.reason for b in self.bundles for r in b.rejects]

    def events(self) -> list[str]:
        return [e.kind for b in self.bundles for e in b.events]

    def fixes(self) -> int:
        return sum(len(b.fixes) for b in self.bundles)


@contextlib.asynccontextmanager
async def running(**over: Any) -> AsyncIterator[Running]:
    clock = over.pop("clock", None)
    settings = Ais140SourceSettings(
        **{"host": "127.0.0.1", "port": 0, "vehicles": VEHICLES, "flush_ms": 20, **over}
    )
    kwargs = {"clock": clock} if clock is not None else {}
    source = Ais140Source(settings, StreamRegistry(), **kwargs)
    run = Running(source)
    task = asyncio.create_task(source.run(run.emit))
    try:
        await until(source.listening.is_set)
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
