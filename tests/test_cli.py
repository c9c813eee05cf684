import argparse
import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def commands() -> list[list[str]]:
    """Every command path, e.g. ['demo'], ['sim', 'water']."""
    found: list[list[str]] = []

    def walk(parser: object, path: list[str]) -> None:
        for action in getattr(parser, "_actions", []):
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):
                for name, sub in choices.items():
                    found.append([*path, name])
                    walk(sub, [*path, name])

    walk(build_parser(), [])
    return found


def test_top_level_help_has_examples() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "examples:" in out and "gateway demo --duration 20" in out


@pytest.mark.parametrize("path", commands(), ids=" ".join)
def test_every_command_help_has_examples(
    path: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out, f"gateway {' '.join(path)} --help shows no examples"
    assert "gateway " in out.split("examples:", 1)[1]


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(ROOT / "config" / "gateway.example.toml")]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_rejects_with_file_key_and_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nbatch_max_rows = '5'\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert f"{bad}: pipeline.batch_max_rows: expected a whole number" in result.stderr


@pytest.mark.parametrize(
    ("table", "says"),
    [
        (
            'profiles_dir = "config/profiles"\n[[sources.m.lines]]\nname = "l"\nkind = "tcp"\n'
            'host = "127.0.0.1"\n[[sources.m.devices]]\nname = "dma-01/inlet"\nline = "l"\n'
            'profile = "no-such-meter"\n',
            "names profile 'no-such-meter', which is not there",
        ),
        ('profiles_dir = "no/such/folder"\n', "no/such/folder"),
    ],
    ids=["missing-profile", "missing-profiles-dir"],
)
def test_check_config_builds_every_part_and_refuses_what_run_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, says: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[sources.m]\ntype = "modbus"\n{table}')
    assert main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: sources.m: " in err and says in err


def examples() -> list[str]:
    """Every example command line in every --help, as written (continuations joined)."""
    found: list[str] = []

    def walk(parser: argparse.ArgumentParser) -> None:
        text = (parser.epilog or "").replace("\\\n", " ")
        for line in text.splitlines():
            command = line.strip().split("  ")[0].split(" | ")[0]  # not the comment, not a pipe
            if re.match(r"^([A-Z_]+=\S+ )*gateway ", command):
                found.append(command)
        for action in parser._actions:
            if isinstance(action.choices, dict):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    return sorted(set(found))


@pytest.mark.parametrize("line", examples())
def test_every_example_in_the_help_parses_as_written(line: str) -> None:
    words = shlex.split(line)
    words = words[words.index("gateway") + 1 :]
    try:
        build_parser().parse_args(words)
    except SystemExit as done:  # --help exits 0; an example that does not parse exits 2
        assert done.code == 0, line


def test_run_reads_the_log_section_of_its_config(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[log]\nformat = "json"\nlevel = "warning"\n[sinks.db]\ntype = "sqlite"\n'
        f'path = "{tmp_path / "s.sqlite"}"\n[outbox]\ndirectory = "{tmp_path}"\n'
        "[metrics]\nenabled = false\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the idle warning: no sources configured
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=30)[1]
    assert json.loads(first)["event"] == "gateway.idle", first
    assert '"level": "info"' not in rest, "info lines are below the configured level"


def test_help_loads_none_of_the_heavy_libraries_nor_the_simulators() -> None:
    probe = (
        "import sys\n"
        "from gateway.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('numba', 'pymodbus', 'paho', 'psycopg', 'firmware_sim', 'numpy')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1] == "[]", out


def test_a_command_after_options_is_still_found() -> None:
    args = build_parser("outbox").parse_args(["--log-level", "debug", "outbox", "stats"])
    assert args.command == "outbox" and args.log_level == "debug"
