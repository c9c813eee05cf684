from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from firmware_sim.water import ModelSettings, WaterNetworkSim, WaterSimSettings
from gateway.bundle import Bundle


@pytest.fixture
async def sim() -> AsyncIterator[WaterNetworkSim]:
    """One DMA: inlet flow meter (with inlet pressure) and one interior pressure logger."""
    water = WaterNetworkSim(WaterSimSettings(model=ModelSettings(dmas=1, seed=3)))
    await water.start()
    try:
        yield water
    finally:
        await water.stop()


@pytest.fixture
async def silent_peer() -> AsyncIterator[int]:
    """A TCP peer that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """An emit callback that keeps what it is given."""

    def __init__(self) -> None:
        self.bundles: list[Bundle] = []

    async def __call__(self, bundle: Bundle) -> None:
        self.bundles.append(bundle)

    def merged(self) -> Bundle:
        return Bundle.merge(self.bundles) if self.bundles else Bundle()


async def run_for(source: object, seconds: float, emit: Collector) -> None:
    task = asyncio.create_task(source.run(emit))  # type: ignore[attr-defined]
    await asyncio.sleep(seconds)
    assert not task.done(), task.exception() if task.done() else None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def run_source() -> Callable[[object, float, Collector], Awaitable[None]]:
    """Run a source for some seconds, failing if it stopped by itself."""
    return run_for


@pytest.fixture
def refused_port() -> int:
    return closed_port()
