"""`gateway run`: build the runtime from the settings and run it until a signal.

    Settings --build_sources--> [ModbusSource, MqttSource]
             --build_stages---> [WaterDetectors, VehicleRules]   (numba kernels warmed first)
             --build_sinks----> [PostgresSink, SqliteSink] each behind a durable Outbox,
                                [MqttSink] (alerts, retained vehicle status) behind memory
             ----------------> Runtime.run(stop) + /metrics endpoint

Every part is built, and so every configuration error raised, before anything
starts: a wrong profile name, an unreadable password file or a damaged outbox
stops the daemon at start, not at 3 a.m.
"""

from __future__ import annotations

import asyncio

from gateway.analytics import kernels, water
from gateway.analytics.vehicle import VehicleRules
from gateway.analytics.water import WaterDetectors
from gateway.config import ConfigError
from gateway.drivers.modbus.profiles import ProfileError
from gateway.drivers.modbus.source import ModbusSource
from gateway.drivers.mqtt.source import MqttSource
from gateway.logs import get_logger
from gateway.metrics import serve_metrics
from gateway.parts import PipelineQueue, Sink, Source, Stage
from gateway.pipeline.outbox import Outbox, OutboxError, open_outboxes
from gateway.pipeline.queue import BundleQueue
from gateway.runtime import Runtime, RuntimeSettings, stop_on_signals
from gateway.settings import Settings, load_settings
from gateway.sinks.mqtt import MqttSink
from gateway.sinks.postgres import PostgresSink
from gateway.sinks.sqlite import SqliteSink
from gateway.streams import StreamRegistry

log = get_logger("gateway.app")


def build_sources(settings: Settings, registry: StreamRegistry) -> list[Source]:
    sources: list[Source] = []
    if settings.modbus.devices:
        sources.append(ModbusSource(settings.modbus, registry))
    if settings.mqtt is not None:
        settings.mqtt.broker.password()  # an unreadable secret stops us now, not at connect
        sources.append(MqttSource(settings.mqtt, registry))
    return sources


def build_stages(settings: Settings, registry: StreamRegistry) -> list[Stage]:
    stages: list[Stage] = []
    kernels.warm_up()
    if settings.dma:
        water.warm_up()
        stages.append(WaterDetectors(registry, settings.dma, settings.water))
    if settings.mqtt is not None:
        VehicleRules.warm_up()
        stages.append(VehicleRules(settings.vehicle_rules, registry))
    return stages


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
    if settings.publish is not None:
        settings.publish.broker.password()  # an unreadable secret stops us now
        sinks.append(MqttSink(settings.publish, registry))
    return sinks


def build_runtime(settings: Settings) -> Runtime:
    registry = StreamRegistry()
    p = settings.pipeline
    sinks = build_sinks(settings, registry)
    # the MQTT feed is live-only (its alerts are stored by the database sinks too),
    # so it gets a queue in memory; the database sinks each get a durable outbox
    stored = [s.name for s in sinks if not isinstance(s, MqttSink)]
    boxes: dict[str, Outbox] = open_outboxes(stored, settings.outbox, registry) if p.durable else {}

    def queue_for(sink: Sink) -> PipelineQueue:
        box = boxes.get(sink.name)
        return box if box is not None else BundleQueue(p.queue_max_bytes)

    return Runtime(
        build_sources(settings, registry),
        sinks,
        build_stages(settings, registry),
        settings=RuntimeSettings(
            queue_max_bytes=p.queue_max_bytes,
            batch_max_rows=p.batch_max_rows,
            batch_max_seconds=p.batch_max_seconds,
            drain_timeout=p.drain_timeout,
        ),
        queue_for=queue_for,
    )


async def serve(settings: Settings, runtime: Runtime) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    m = settings.metrics
    server = None
    if m.enabled:
        parts: list[object] = [
            runtime,
            *runtime.sources,
            *runtime.sinks,
            *(d.queue for d in runtime.deliveries),
        ]
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
    except (ProfileError, OutboxError) as err:
        raise ConfigError(path, "", str(err)) from err
    if not runtime.sources:
        log.warning("gateway.idle", reason="no sources configured ([modbus] devices, [mqtt])")
    asyncio.run(serve(settings, runtime))
    return 0
