"""`gateway db migrate` as a user runs it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.db.command import register
from tests.conftest import PgServer


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="gateway")
    register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def test_migrate_reports_the_mode_and_is_idempotent(
    db_dsn: str, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("db", "migrate", "--dsn", db_dsn) == 0
    out = capsys.readouterr().out
    assert f"mode: {pg_server.mode}" in out and "0001_tables" in out
    assert run("db", "migrate", "--dsn", db_dsn, "--readings-days", "60") == 0
    assert "up to date" in capsys.readouterr().out


def test_bad_input_exits_non_zero_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("db", "migrate", "--dsn", "postgresql://u:pw@h/db") == 2
    assert "holds a password" in capsys.readouterr().err
    assert run("db", "migrate", "--dsn", "postgresql://postgres@127.0.0.1:9/x") == 1
    assert "cannot connect" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("db", "migrate", "--help")
    assert "examples:" in capsys.readouterr().out


def test_the_rollup_zone_is_fixed_at_the_first_migrate(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("db", "migrate", "--dsn", pg_dsn, "--rollup-timezone", "Europe/Berlin") == 0
    assert "local time of Europe/Berlin" in capsys.readouterr().out
    assert run("db", "migrate", "--dsn", pg_dsn) == 1  # the default, Asia/Kolkata
    err = capsys.readouterr().err
    assert "not Asia/Kolkata" in err and "--rollup-timezone Europe/Berlin" in err
    assert run("db", "migrate", "--dsn", pg_dsn, "--rollup-timezone", "IST") == 2
    assert "rollup_timezone 'IST'" in capsys.readouterr().err


def test_the_config_file_gives_the_postgres_settings_and_flags_override_it(
    pg_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[postgres]\ndsn = "{pg_dsn}"\nrollup_timezone = "Europe/Berlin"\n'
        "[postgres.retention]\nreadings_days = 45\n"
    )
    assert run("db", "migrate", "-c", str(config)) == 0
    assert "local time of Europe/Berlin" in capsys.readouterr().out
    # the same zone comes from the file, so this is a no-op, with a flag on top
    assert run("db", "migrate", "-c", str(config), "--readings-days", "60") == 0
    assert "up to date" in capsys.readouterr().out
    assert run("db", "migrate", "-c", str(config), "--rollup-timezone", "Asia/Kolkata") == 1
    assert "--rollup-timezone Europe/Berlin" in capsys.readouterr().err
    config.write_text("[postgres]\nrollup_timezone = 7\n")
    assert run("db", "migrate", "-c", str(config)) == 2
    assert "rollup_timezone" in capsys.readouterr().err

    monkeypatch.delenv("GATEWAY_DSN", raising=False)
    assert run("db", "migrate") == 2
    assert "-c CONFIG" in capsys.readouterr().err
