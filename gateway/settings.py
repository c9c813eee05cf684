"""The gateway's settings: one TOML file, one frozen dataclass per part.

    [gateway] [log] [pipeline] [postgres] [sqlite] [metrics] [outbox]
    [modbus] [mqtt] [publish] [vehicle_rules] [[dma]] [water]

`load_settings(path)` reads and checks the whole file before anything starts;
`config/gateway.example.toml` shows every section.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Literal

from gateway.analytics.vehicle_settings import VehicleRulesSettings
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.config import ConfigError, convert
from gateway.db.settings import PostgresSettings
from gateway.drivers.modbus.settings import ModbusSettings
from gateway.drivers.mqtt.source import MqttSourceSettings
from gateway.logs import LogFormat
from gateway.pipeline.outbox import OutboxSettings
from gateway.sinks.mqtt import MqttPublishSettings


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    id: str = dataclasses.field(
        default="gateway-01", metadata={"help": "unique name of this gateway in the central DB"}
    )


@dataclasses.dataclass(frozen=True, slots=True)
class LogSettings:
    format: LogFormat = "kv"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclasses.dataclass(frozen=True, slots=True)
class PipelineSettings:
    queue_max_bytes: int = 64 * 1024 * 1024
    batch_max_rows: int = 50_000
    batch_max_seconds: float = 1.0
    drain_timeout: float = 10.0
    durable: bool = dataclasses.field(
        default=True,
        metadata={"help": "keep data in the on-disk outbox until each sink confirms it"},
    )
    sinks: tuple[Literal["postgres", "sqlite"], ...] = dataclasses.field(
        default=("postgres",), metadata={"help": "where data goes: postgres, sqlite or both"}
    )

    def __post_init__(self) -> None:
        if not self.sinks:
            raise ValueError('sinks is empty; write sinks = ["postgres"] or ["sqlite"]')
        if self.queue_max_bytes < 1024 * 1024:
            raise ValueError("queue_max_bytes must be at least 1048576 (1 MiB)")
        if self.batch_max_rows < 1 or self.batch_max_seconds <= 0:
            raise ValueError("batch_max_rows and batch_max_seconds must be positive")


@dataclasses.dataclass(frozen=True, slots=True)
class SqliteSettings:
    path: str = dataclasses.field(
        default="var/gateway.sqlite", metadata={"help": "embedded store on the gateway's disk"}
    )


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = dataclasses.field(default=9108, metadata={"help": "GET /metrics on this port"})


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    gateway: GatewaySettings = dataclasses.field(default_factory=GatewaySettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)
    pipeline: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)
    postgres: PostgresSettings = dataclasses.field(default_factory=PostgresSettings)
    sqlite: SqliteSettings = dataclasses.field(default_factory=SqliteSettings)
    metrics: MetricsSettings = dataclasses.field(default_factory=MetricsSettings)
    outbox: OutboxSettings = dataclasses.field(default_factory=OutboxSettings)
    modbus: ModbusSettings = dataclasses.field(default_factory=ModbusSettings)
    mqtt: MqttSourceSettings | None = None
    publish: MqttPublishSettings | None = None
    vehicle_rules: VehicleRulesSettings = dataclasses.field(default_factory=VehicleRulesSettings)
    dma: tuple[DmaSettings, ...] = ()
    water: WaterSettings = dataclasses.field(default_factory=WaterSettings)


def load_settings(path: str | Path) -> Settings:
    """Read and validate a gateway TOML file."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(
            file, "", "no such file; copy config/gateway.example.toml and edit it"
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(file, "", f"not valid TOML: {err}") from err
    return convert(Settings, data, file=file)
