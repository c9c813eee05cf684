"""`gateway run`: build the runtime from the settings and run it until a signal.

    Settings --build_sources--> [ModbusSource]
             --build_sinks----> [PostgresSink, SqliteSink]
             ----------------> Runtime.run(stop) + /metrics endpoint

Every part is built, and so every configuration error raised, before anything
starts: a wrong profile name or an unreadable password file stops the daemon
at start, not at 3 a.m.
"""

from __future__ import annotations

import asyncio

from gateway.config import ConfigError, Settings, load_settings
from gateway.db.settings import SecretError
from gateway.drivers.modbus.profiles import ProfileError
from gateway.drivers.modbus.source import ModbusSource
from gateway.logs import get_logger
from gateway.metrics import serve_metrics
from gateway.runtime import Runtime, RuntimeSettings, Source, stop_on_signals
from gateway.sinks.base import Sink
from gateway.sinks.postgres import PostgresSink
from gateway.sinks.sqlite import SqliteSink
from gateway.streams import StreamRegistry

log = get_logger("gateway.app")


def build_sources(settings: Settings, registry: StreamRegistry) -> list[Source]:
    sources: list[Source] = []
    if settings.modbus.devices:
        sources.append(ModbusSource(settings.modbus, registry))
    return sources


def build_sinks(settings: Settings, registry: StreamRegistry) -> list[Sink]:
    sinks: list[Sink] = []
    if "postgres" in settings.pipeline.sinks:
        pg = settings.postgres
        sinks.append(
            PostgresSink(
                pg.conninfo(),
                registry,
                settings.gateway.id,
                raw_streams=pg.raw_streams,
                pool_max_size=pg.pool_max_size,
                connect_timeout=pg.connect_timeout,
                write_timeout=pg.write_timeout,
                retention=pg.retention,
            )
        )
    if "sqlite" in settings.pipeline.sinks:
        sinks.append(SqliteSink(settings.sqlite.path, registry))
    return sinks


def build_runtime(settings: Settings) -> Runtime:
    registry = StreamRegistry()
    p = settings.pipeline
    return Runtime(
        build_sources(settings, registry),
        build_sinks(settings, registry),
        settings=RuntimeSettings(
            queue_max_bytes=p.queue_max_bytes,
            batch_max_rows=p.batch_max_rows,
            batch_max_seconds=p.batch_max_seconds,
            drain_timeout=p.drain_timeout,
        ),
    )


async def serve(settings: Settings, runtime: Runtime) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    m = settings.metrics
    server = None
    if m.enabled:
        parts: list[object] = [runtime, *runtime.sources, *runtime.sinks]
        server = await serve_metrics(parts, m.host, m.port)
    try:
        await runtime.run(stop)
    finally:
        if server is not None:
            server.close()
            await server.wait_closed()


def run_gateway(path: str) -> int:
    settings = load_settings(path)
    try:
        runtime = build_runtime(settings)
    except (SecretError, ProfileError) as err:
        raise ConfigError(path, "", str(err)) from err
    if not runtime.sources:
        log.warning("gateway.idle", reason="no sources configured ([modbus] devices, [mqtt])")
    asyncio.run(serve(settings, runtime))
    return 0
