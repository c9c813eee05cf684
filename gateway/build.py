"""The composition root: one `build(settings)` wires the whole gateway.

    Settings --registry.SOURCES--> sources   (each made by its type's `create`, nothing started)
             --registry.STAGES---> stages    (aggregate always; water with DMAs; vehicle rules
                                              with a vehicle source)
             --registry.SINKS----> sinks, each behind its queue: a durable Outbox on disk,
                                   or memory for a live feed (MQTT)
             --> Runtime(sources, stages, sinks)

`gateway run`, `gateway demo`, `gateway replay` and `gateway check-config` all
build through here. With `check=True` every part is made, and so every setting
checked (a missing profile, GTFS file or folder, an unreadable secret), but no
file is opened and no kernel compiled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.config import ConfigError
from gateway.parts import PipelineQueue, Sink, Source, Stage, Wiring
from gateway.pipeline.outbox import open_outboxes
from gateway.pipeline.outbox_file import OutboxError
from gateway.pipeline.queue import BundleQueue
from gateway.registry import SINKS, SOURCES, STAGES, StageType
from gateway.runtime import Runtime, RuntimeSettings
from gateway.settings import Part, Settings
from gateway.streams import StreamRegistry


@dataclasses.dataclass(slots=True)
class Gateway:
    """Everything `build` made; `runtime` is None for a check."""

    settings: Settings
    registry: StreamRegistry
    sources: list[Source]
    stages: list[Stage]
    sinks: list[Sink]
    runtime: Runtime | None

    def measured(self) -> list[object]:
        """The parts whose figures /metrics shows."""
        if self.runtime is None:
            return []
        queues = [d.queue for d in self.runtime.deliveries]
        return [self.runtime, *self.sources, *self.sinks, *queues]


def _made(part: Part, role: str, factory: Any, wiring: Wiring, file: str) -> Any:
    try:
        return factory.create(part.name, part.settings, wiring)
    except (ValueError, OSError) as err:  # a wrong profile, GTFS file, folder or secret
        raise ConfigError(file, f"{role}.{part.name}", str(err)) from err


def _wanted(stage: StageType, settings: Settings) -> bool:
    if stage.when == "dmas":
        return bool(settings.dma)
    if stage.when == "vehicles":
        return any(SOURCES[p.type].vehicles for p in settings.sources)
    return True


def build_stages(settings: Settings, wiring: Wiring, *, warm: bool, file: str) -> list[Stage]:
    """The stages the settings call for, in the order bundles pass through them."""
    stages: list[Stage] = []
    for name, stage in STAGES.items():
        if not _wanted(stage, settings):
            continue
        cls = stage.factory_class()
        try:
            made = cls.create(wiring, *(getattr(settings, s) for s in stage.sections))
        except (ValueError, OSError) as err:
            raise ConfigError(
                file, stage.sections[0] if stage.sections else name, str(err)
            ) from err
        if warm:
            cls.warm_up()  # compile (or load) the numba kernels before the first bundle
        stages.append(made)
    return stages


def build(
    settings: Settings,
    *,
    file: str = "<settings>",
    check: bool = False,
    extra_stages: Sequence[Stage] = (),
    record: Path | None = None,
) -> Gateway:
    """Make every part of `settings` and wire them; raise ConfigError naming the key.

    `extra_stages` run after the configured ones (the demo's live summary). `record`:
    a new folder that gets everything the sources emit (`gateway.recording`)."""
    registry = StreamRegistry()
    wiring = Wiring(registry, settings.gateway.id)
    recorder = None
    if record is not None and not check:
        from gateway.recording import Recorder, RecordingError  # noqa: PLC0415

        try:
            recorder = Recorder(record, registry, settings, config_file=file)
        except RecordingError as err:
            raise ConfigError(file, "--record", str(err)) from err
    sinks: list[Sink] = [
        _made(p, "sinks", SINKS[p.type].factory_class(), wiring, file) for p in settings.sinks
    ]
    sources: list[Source] = [
        _made(
            p,
            "sources",
            SOURCES[p.type].factory_class(),
            wiring
            if recorder is None
            else dataclasses.replace(wiring, on_raw=recorder.raw_tap(p.name)),
            file,
        )
        for p in settings.sources
    ]
    stages = [*build_stages(settings, wiring, warm=not check, file=file), *extra_stages]
    gateway = Gateway(settings, registry, sources, stages, sinks, None)
    if check:
        return gateway
    pipe = settings.pipeline
    stored = [p.name for p in settings.sinks if SINKS[p.type].durable]
    try:
        boxes = open_outboxes(stored, settings.outbox, registry) if pipe.durable else {}
    except OutboxError as err:
        raise ConfigError(file, "outbox", str(err)) from err

    def queue_for(sink: Sink) -> PipelineQueue:
        box = boxes.get(sink.name)
        return box if box is not None else BundleQueue(pipe.queue_max_bytes)

    gateway.runtime = Runtime(
        sources if recorder is None else recorder.wrap(sources),
        sinks,
        stages,
        settings=RuntimeSettings(
            queue_max_bytes=pipe.queue_max_bytes,
            batch_max_rows=pipe.batch_max_rows,
            batch_max_seconds=pipe.batch_max_seconds,
            drain_timeout=pipe.drain_timeout,
        ),
        queue_for=queue_for,
    )
    return gateway
