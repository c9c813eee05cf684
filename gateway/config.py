"""Configuration: TOML tables checked against typed, frozen settings.

Each part of the gateway declares its settings as a frozen dataclass with
defaults; `gateway.settings.Settings` composes them. `convert` walks a dataclass's type hints
and checks the TOML against them, so every error names the file, the key and
what to write instead:

    config/gateway.toml: [postgres].connect_timeout: expected a number of seconds
    (e.g. connect_timeout = 5), got the string "5s"

Secrets never live in the TOML. A section that needs one has `<name>_env`
(an environment variable) and `<name>_file` (a file holding it) keys, and a
literal `password` key is refused.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

_SECRET_KEYS = {"password", "passwd", "secret", "token", "api_key"}


class ConfigError(ValueError):
    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp in (str, Path):
        return "a quoted string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list [...]"
    if origin in (dict, Mapping):
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    return str(tp)


def _example(name: str, tp: Any, default: Any) -> str:
    if (
        default is not dataclasses.MISSING
        and default is not None
        and not isinstance(default, list | tuple | dict)
    ):
        value = default
    elif tp is bool:
        value = True
    elif tp is int:
        value = 1
    elif tp is float:
        value = 1.5
    elif typing.get_origin(tp) is Literal:
        value = typing.get_args(tp)[0]
    elif tp in (str, Path):
        value = "..."
    else:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | Path):
        text = f'"{value}"'
    else:
        text = repr(value)
    return f" (e.g. {name} = {text})"


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "the number", float: "the number", str: "the string"}
    for tp, label in names.items():
        if type(value) is tp:
            return f"{label} {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def convert(cls: type[T], data: Mapping[str, Any], *, file: str, key: str = "") -> T:
    """Build the dataclass `cls` from a TOML table, or raise ConfigError."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{key}." if key else ""
    for name in data:
        if name not in fields:
            if name.lower() in _SECRET_KEYS:
                raise ConfigError(
                    file,
                    prefix + name,
                    "secrets do not belong in the config file; set "
                    f'{name}_env = "ENV_VAR_NAME" or {name}_file = "/path/to/file" instead',
                )
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(fields)}"
            raise ConfigError(file, prefix + name, f"unknown key; {hint}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        path = prefix + name
        if name not in data:
            required = field.default_factory is dataclasses.MISSING
            if field.default is dataclasses.MISSING and required:
                tp = hints[name]
                raise ConfigError(
                    file,
                    path,
                    f"missing required key: add it as {_describe(tp)}"
                    + _example(name, tp, dataclasses.MISSING),
                )
            continue
        values[name] = _value(hints[name], data[name], file, path, name=name, default=field.default)
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(file, key or "(top level)", str(err)) from err


def _value(tp: Any, raw: Any, file: str, path: str, *, name: str, default: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def wrong() -> ConfigError:
        return ConfigError(
            file,
            path,
            f"expected {_describe(tp)}{_example(name, tp, default)}, got {_type_name(raw)}",
        )

    if origin in (types.UnionType, typing.Union):
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _value(option, raw, file, path, name=name, default=default)
            except ConfigError:
                continue
        raise wrong()
    if dataclasses.is_dataclass(tp):
        if not isinstance(raw, dict):
            raise wrong()
        return convert(typing.cast(type[Any], tp), raw, file=file, key=path)
    if origin is Literal:
        if raw not in args:
            raise wrong()
        return raw
    if tp is bool:
        if not isinstance(raw, bool):
            raise wrong()
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise wrong()
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise wrong()
        return float(raw)
    if tp is str:
        if not isinstance(raw, str):
            raise wrong()
        return raw
    if tp is Path:
        if not isinstance(raw, str):
            raise wrong()
        return Path(raw)
    if origin in (list, tuple):
        if not isinstance(raw, list):
            raise wrong()
        item = args[0]
        items = [
            _value(item, v, file, f"{path}[{i}]", name=name, default=None)
            for i, v in enumerate(raw)
        ]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(raw, dict):
            raise wrong()
        return {
            k: _value(args[1], v, file, f"{path}.{k}", name=k, default=None) for k, v in raw.items()
        }
    if tp is Any:
        return raw
    raise TypeError(f"unsupported settings type {tp!r} at {path}")


def read_secret(env: str | None, file: str | None, *, what: str) -> str | None:
    """The secret named by an env var or held in a file; None when neither is set."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(
                "environment", env, f"the {what} is expected here; export {env}=... before starting"
            )
        return value
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as err:
            raise ConfigError(
                file, "", f"cannot read the {what}: {err.strerror}; check the path and permissions"
            ) from err
    return None


_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*$")


def check_timezone(name: str, key: str = "timezone") -> str:
    """`name` if it is an IANA zone name ("Asia/Kolkata", "Europe/Berlin"), else
    ValueError naming `key`. Offsets and aliases ("+05:30", "localtime") are
    refused: only a zone name carries the daylight-saving rules."""
    if not _ZONE_NAME.match(name) or name in ("localtime", "posixrules"):
        raise ValueError(f'{key} {name!r} is not a time zone name, e.g. "Asia/Kolkata"')
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f'unknown {key} {name!r}; give an IANA zone name, e.g. "Asia/Kolkata"'
        ) from err
    return name
