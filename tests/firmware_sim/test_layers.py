"""The simulators are the devices' side of the wire: they import none of the gateway's
drivers, analytics, pipeline or sinks, so a bug there cannot hide behind the same bug
in its simulator."""

from __future__ import annotations

import ast
from pathlib import Path

SIMULATORS = Path(__file__).resolve().parents[2] / "firmware_sim"
FORBIDDEN = ("gateway.drivers", "gateway.analytics", "gateway.pipeline", "gateway.sinks")
PENDING: set[tuple[str, str]] = set()  # (file, import) allowed for a while; none now


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_imports_reads_every_form(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import gateway.sinks.mqtt\nfrom gateway.drivers import modbus\n"
        "def f():\n    from gateway.analytics.kernels import x\n"
    )
    assert {"gateway.sinks.mqtt", "gateway.drivers.modbus", "gateway.analytics.kernels.x"} <= (
        imports(module)
    )


def test_simulators_import_no_gateway_layer() -> None:
    bad = []
    for path in sorted(SIMULATORS.rglob("*.py")):
        where = path.relative_to(SIMULATORS).as_posix()
        for name in sorted(imports(path)):
            if name.startswith(FORBIDDEN) and (where, name) not in PENDING:
                bad.append(f"firmware_sim/{where} imports {name}")
    assert not bad, "\n".join(bad)
