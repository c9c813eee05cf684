"""`gateway run`: build the gateway from its config file and run it until a signal.

    load_settings(FILE) --> build(settings) --> Runtime.run(stop) + /metrics endpoint

Every part is built, and so every configuration error raised, before anything
starts: a wrong profile name, an unreadable password file or a damaged outbox
stops the daemon at start, not at 3 a.m.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.build import Gateway, build
from gateway.logs import get_logger
from gateway.metrics import serve_metrics
from gateway.runtime import stop_on_signals
from gateway.settings import Settings

log = get_logger("gateway.app")


async def serve(gateway: Gateway) -> None:
    runtime = gateway.runtime
    assert runtime is not None, "serve a built gateway, not a check"
    stop = asyncio.Event()
    stop_on_signals(stop)
    m = gateway.settings.metrics
    server = await serve_metrics(gateway.measured(), m.host, m.port) if m.enabled else None
    try:
        await runtime.run(stop)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


def run_gateway(settings: Settings, path: str, *, record: Path | None = None) -> int:
    gateway = build(settings, file=path, record=record)
    if not gateway.sources:
        log.warning("gateway.idle", reason="no sources configured ([sources.<name>] tables)")
    asyncio.run(serve(gateway))
    return 0
