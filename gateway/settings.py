"""The gateway's settings: one TOML file; the core sections here, each part's own with it.

    [gateway] [log] [pipeline] [outbox] [metrics]      the core, defined here
    [sources.<name>] type = "modbus" | "mqtt" | ...    one table per input, named by you
    [sinks.<name>]   type = "postgres" | "sqlite" | "mqtt"
    [[dma]] [water] [vehicle_rules]                    what the stages read

A part's table is checked against the settings class its type names in
`gateway.registry`; two parts of one type run side by side under their own
names (a city broker and a vendor's). The sections of the first versions —
`[modbus]`, `[mqtt]`, `[publish]`, `[postgres]`, `[sqlite]` with
`pipeline.sinks` — still load, as the parts `modbus`, `mqtt`, `publish`,
`postgres` and `sqlite`, and say once how to write them now.

`load_settings(path)` reads and checks the whole file before anything starts;
`config/gateway.example.toml` shows every section.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from gateway.analytics.vehicle_settings import VehicleRulesSettings
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.config import ConfigError, convert
from gateway.logs import LogFormat, get_logger
from gateway.pipeline.outbox_file import OutboxSettings
from gateway.registry import ROLES

log = get_logger("gateway.settings")


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

    def __post_init__(self) -> None:
        if self.queue_max_bytes < 1024 * 1024:
            raise ValueError("queue_max_bytes must be at least 1048576 (1 MiB)")
        if self.batch_max_rows < 1 or self.batch_max_seconds <= 0:
            raise ValueError("batch_max_rows and batch_max_seconds must be positive")


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = dataclasses.field(default=9108, metadata={"help": "GET /metrics on this port"})


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """One named source or sink from the config, with its type's settings."""

    name: str
    type: str
    settings: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    gateway: GatewaySettings = dataclasses.field(default_factory=GatewaySettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)
    pipeline: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)
    outbox: OutboxSettings = dataclasses.field(default_factory=OutboxSettings)
    metrics: MetricsSettings = dataclasses.field(default_factory=MetricsSettings)
    sources: tuple[Part, ...] = ()
    sinks: tuple[Part, ...] = ()
    vehicle_rules: VehicleRulesSettings = dataclasses.field(default_factory=VehicleRulesSettings)
    dma: tuple[DmaSettings, ...] = ()
    water: WaterSettings = dataclasses.field(default_factory=WaterSettings)

    def __post_init__(self) -> None:
        names = [p.name for p in (*self.sources, *self.sinks)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"part names must be unique across sources and sinks: {twice}")

    def first_sink(self, kind: str) -> Any | None:
        """The settings of the first sink of type `kind` (the database commands read it)."""
        return next((p.settings for p in self.sinks if p.type == kind), None)


_LEGACY_SOURCES = {"modbus": "modbus", "mqtt": "mqtt"}
_LEGACY_SINKS = {"publish": "mqtt"}


def _legacy(data: dict[str, Any], file: str) -> dict[str, Any]:
    """Sections of the first config format as named parts, saying once what to write now."""
    data = dict(data)
    sources = dict(data.pop("sources", {}))
    sinks = dict(data.pop("sinks", {}))
    moved: list[str] = []
    for section, kind in _LEGACY_SOURCES.items():
        if section in data:
            _take(sources, section, {"type": kind, **data.pop(section)}, file, "sources")
            moved.append(f"[{section}] -> [sources.{section}] type = {kind!r}")
    for section, kind in _LEGACY_SINKS.items():
        if section in data:
            _take(sinks, section, {"type": kind, **data.pop(section)}, file, "sinks")
            moved.append(f"[{section}] -> [sinks.{section}] type = {kind!r}")
    pipeline = dict(data.get("pipeline", {}))
    listed = pipeline.pop("sinks", None)
    legacy_dbs: dict[str, Any] = {k: data.pop(k) for k in ("postgres", "sqlite") if k in data}
    if listed is not None or legacy_dbs:
        names = list(listed) if listed is not None else ["postgres"]
        for name in names:
            if name not in ("postgres", "sqlite"):
                raise ConfigError(file, "pipeline.sinks", f"unknown sink {name!r}")
            _take(sinks, name, {"type": name, **legacy_dbs.get(name, {})}, file, "sinks")
            moved.append(f"[{name}] -> [sinks.{name}] type = {name!r}")
        data["pipeline"] = pipeline
    if moved:
        log.warning(
            "config.old_form",
            file=file,
            change="; ".join(moved),
            remedy="the old sections still work; see config/gateway.example.toml",
        )
    if sources:
        data["sources"] = sources
    data["sinks"] = sinks
    return data


def _take(into: dict[str, Any], name: str, table: dict[str, Any], file: str, role: str) -> None:
    if name in into:
        raise ConfigError(
            file, f"{role}.{name}", f"defined twice: as [{role}.{name}] and in an old section"
        )
    into[name] = table


def _parts(role: str, tables: Mapping[str, Any], file: str) -> tuple[Part, ...]:
    types = ROLES[role]
    out: list[Part] = []
    for name, raw in tables.items():
        key = f"{role}.{name}"
        if not isinstance(raw, Mapping):
            raise ConfigError(file, key, f'expected a table, e.g. [{key}] type = "..."')
        table = dict(raw)
        kind = table.pop("type", None)
        if kind not in types:
            known = ", ".join(repr(t) for t in types)
            raise ConfigError(
                file,
                f"{key}.type",
                f"{'missing' if kind is None else repr(kind)}: write one of {known}",
            )
        out.append(
            Part(name, kind, convert(types[kind].settings_class(), table, file=file, key=key))
        )
    return tuple(out)


def settings_from(data: Mapping[str, Any], file: str = "<settings>") -> Settings:
    """Settings from a parsed TOML document (old sections translated)."""
    plain = _legacy(dict(data), file)
    sources = _parts("sources", plain.pop("sources", {}), file)
    # no sink named: the central database with its defaults, as before
    sinks = _parts("sinks", plain.pop("sinks", None) or {"postgres": {"type": "postgres"}}, file)
    base = convert(Settings, plain, file=file)
    try:
        return dataclasses.replace(base, sources=sources, sinks=sinks)
    except ValueError as err:
        raise ConfigError(file, "(top level)", str(err)) from err


def load_settings(path: str | Path) -> Settings:
    """Read and validate a gateway TOML file."""
    file = str(path)
    if Path(path).is_dir():
        raise ConfigError(file, "", "is a folder; give the TOML file, e.g. -c config/gateway.toml")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(
            file, "", "no such file; copy config/gateway.example.toml and edit it"
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(file, "", f"not valid TOML: {err}") from err
    return settings_from(data, file)
