"""The layers hold: read every import (ast) and fail when a module imports a layer above it.

app       cli, build, app, demo, replay, settings, alertdesk, command modules
runtime   runtime, pipeline/            (queues, outbox, delivery)
parts     drivers/, analytics/, sinks/ (+ db/ for sinks), each only core + itself
core      batch, bundle, events, streams, config, logs, metrics, backoff, parts, mqtt/
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORE = {
    "gateway",
    "gateway.batch",
    "gateway.bundle",
    "gateway.events",
    "gateway.streams",
    "gateway.config",
    "gateway.logs",
    "gateway.metrics",
    "gateway.backoff",
    "gateway.helptext",
    "gateway.parts",
    "gateway.readings_csv",
    "gateway.mqtt",
}
# what each package may import besides the core (a prefix allows its sub-modules)
ALLOWED = {
    "gateway.drivers": ("gateway.drivers",),
    "gateway.analytics": ("gateway.analytics",),
    "gateway.sinks": ("gateway.sinks", "gateway.db"),
    "gateway.db": ("gateway.db",),
    "gateway.pipeline": ("gateway.pipeline",),
    "gateway.runtime": ("gateway.pipeline",),
    "gateway.mqtt": ("gateway.mqtt",),
}
COMMANDS = ("command.py", "_command.py")  # a CLI command module is of the app layer


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "gateway" or m.startswith(("gateway.", "firmware_sim"))}


def is_core(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CORE if c != "gateway") or (
        module == "gateway"
    )


def violations() -> list[str]:
    bad: list[str] = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        mod = module_name(path)
        if path.name.endswith(COMMANDS):
            continue
        rule = next((k for k in ALLOWED if mod == k or mod.startswith(k + ".")), None)
        if rule is None and not is_core(mod):
            continue  # the app layer may import anything
        allowed = ALLOWED.get(rule, ()) if rule else ()
        for dep in sorted(imports(path)):
            if is_core(dep) or dep.startswith(allowed):
                continue
            bad.append(f"{mod} imports {dep}")
    return bad


def test_no_module_imports_a_layer_above_it() -> None:
    assert violations() == []


def test_the_rule_catches_a_driver_importing_a_sink(tmp_path: Path) -> None:
    """The checker itself: a planted violation is found."""
    planted = ROOT / "gateway" / "drivers" / "_planted_for_test.py"
    planted.write_text("from gateway.sinks.postgres import PostgresSink\n")
    try:
        assert "gateway.drivers._planted_for_test imports gateway.sinks.postgres" in violations()
    finally:
        planted.unlink()
