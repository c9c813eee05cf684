"""The part types the gateway can wire: each source, stage and sink type, its settings
class and its factory. A new driver is one package plus one line here.

    [sources.<name>] type = "modbus"   --> SOURCES["modbus"] --> ModbusSettings, ModbusSource
    [sinks.<name>]   type = "postgres" --> SINKS["postgres"] --> PostgresSettings, PostgresSink

Entries name their classes as "module:Class" and are imported only when a config
uses them, so `gateway --help` loads none of the drivers' libraries. A factory is
the class's `create(name, settings, wiring)`; stages are made from the top-level
sections they read (`[[dma]]` and `[water]`, `[vehicle_rules]`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Final, Literal


@dataclasses.dataclass(frozen=True, slots=True)
class PartType:
    settings: str  # "module:Class" of its settings dataclass
    factory: str  # "module:Class" whose `create(name, settings, wiring)` makes the part
    summary: str
    # sinks: behind the durable on-disk outbox; False for a live feed kept in memory
    durable: bool = True
    # sources: they emit bus fixes, so the vehicle rules run
    vehicles: bool = False

    def settings_class(self) -> type[Any]:
        cls: type[Any] = _load(self.settings)
        return cls

    def factory_class(self) -> Any:
        return _load(self.factory)


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


SOURCES: Final[dict[str, PartType]] = {
    "modbus": PartType(
        "gateway.drivers.modbus.settings:ModbusSettings",
        "gateway.drivers.modbus.source:ModbusSource",
        "water meters and pressure loggers over Modbus TCP and RTU",
    ),
    "mqtt": PartType(
        "gateway.drivers.mqtt.source:MqttSourceSettings",
        "gateway.drivers.mqtt.source:MqttSource",
        "bus positions, CAN and health over MQTT",
        vehicles=True,
    ),
    "ais140": PartType(
        "gateway.drivers.ais140.settings:Ais140SourceSettings",
        "gateway.drivers.ais140.source:Ais140Source",
        "AIS-140 tracking units connecting over TCP (or UDP), any vendor's packets",
        vehicles=True,
    ),
}

SINKS: Final[dict[str, PartType]] = {
    "postgres": PartType(
        "gateway.db.settings:PostgresSettings",
        "gateway.sinks.postgres:PostgresSink",
        "PostgreSQL or TimescaleDB (binary COPY)",
    ),
    "sqlite": PartType(
        "gateway.sinks.sqlite:SqliteSettings",
        "gateway.sinks.sqlite:SqliteSink",
        "an embedded SQLite store on the gateway's disk",
    ),
    "mqtt": PartType(
        "gateway.sinks.mqtt:MqttPublishSettings",
        "gateway.sinks.mqtt:MqttSink",
        "alerts and retained vehicle status out over MQTT",
        durable=False,
    ),
}

ROLES: Final[dict[str, dict[str, PartType]]] = {"sources": SOURCES, "sinks": SINKS}


@dataclasses.dataclass(frozen=True, slots=True)
class StageType:
    factory: str  # "module:Class" whose `create(wiring, *sections)` makes the stage
    sections: tuple[str, ...]  # the top-level settings it reads, passed in this order
    when: Literal["always", "dmas", "vehicles"]  # with DMAs configured, with a vehicle source

    def factory_class(self) -> Any:
        return _load(self.factory)


# in the order bundles pass through them
STAGES: Final[dict[str, StageType]] = {
    "aggregate": StageType("gateway.analytics.aggregate:AggregateStage", (), "always"),
    "water": StageType("gateway.analytics.water:WaterDetectors", ("dma", "water"), "dmas"),
    "vehicle": StageType("gateway.analytics.vehicle:VehicleRules", ("vehicle_rules",), "vehicles"),
}
