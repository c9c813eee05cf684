"""`gateway alerts` against a real PostgreSQL, and on a replay's JSONL file."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from gateway import alertdesk
from gateway.events import Alert, Severity

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC


def _create_table(dsn: str) -> None:
    """The project's own migration when it is there, else the documented columns."""
    sql = ROOT / "gateway" / "db" / "migrations" / "0001_tables.sql"
    with psycopg.connect(dsn, autocommit=True) as conn:
        if sql.exists():
            conn.execute(sql.read_text().encode())
        conn.execute(
            b"""CREATE TABLE IF NOT EXISTS alerts (
                id text PRIMARY KEY, gateway text NOT NULL, kind text NOT NULL,
                asset text NOT NULL, severity text NOT NULL, state text NOT NULL,
                opened_at timestamptz NOT NULL, updated_at timestamptz, cleared_at timestamptz,
                started_at timestamptz, magnitude double precision, score double precision,
                message text NOT NULL DEFAULT '', evidence jsonb NOT NULL DEFAULT '{}',
                needs_ack boolean NOT NULL DEFAULT false, acked_by text, acked_at timestamptz)"""
        )


def _insert(dsn: str, rows: list[tuple[str, str, str, str, str, dt.datetime, float]]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for id_, kind, asset, severity, state, opened, magnitude in rows:
            conn.execute(
                "INSERT INTO alerts (id, gateway, kind, asset, severity, state, opened_at, "
                "magnitude, score, message, evidence, needs_ack, cleared_at) VALUES "
                "(%s, 'gw-1', %s, %s, %s, %s, %s, %s, 0.8, '', '{}', %s, %s)",
                (id_, kind, asset, severity, state, opened, magnitude, severity == "critical",
                 opened + dt.timedelta(hours=1) if state == "cleared" else None),
            )  # fmt: skip


@pytest.fixture
def desk_dsn(pg_dsn: str) -> str:
    _create_table(pg_dsn)
    t = dt.datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    _insert(pg_dsn, [
        ("a1", "leak", "dma-07", "warning", "opened", t, 1.5),
        ("a2", "burst", "dma-07", "critical", "updated", t + dt.timedelta(hours=2), 6.0),
        ("a3", "leak", "dma-08", "warning", "opened", t - dt.timedelta(days=2), 0.7),
        ("a4", "sensor_fault", "dma-07/inlet/flow_lps", "info", "opened", t, -1.0),
        ("a5", "leak", "dma-07", "warning", "cleared", t - dt.timedelta(days=5), 2.0),
        ("a6", "leak", "dma-070", "warning", "opened", t, 2.0),
    ])  # fmt: skip
    return pg_dsn


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gateway")
    alertdesk.register(parser.add_subparsers())
    return parser.parse_args(["alerts", *argv])


def ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_lists_open_alerts_newest_first(desk_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--dsn", desk_dsn)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert ids(out) == ["a2", "a1", "a4", "a6", "a3"]
    assert "a5" not in ids(out)  # cleared
    assert "NEEDED" in out  # the critical burst needs an ack
    assert "OPENED (Asia/Kolkata)" in out
    a1 = next(line for line in out.splitlines() if line.startswith("a1 "))
    assert "2026-01-05 07:30:00 IST" in a1  # 02:00 UTC, shown in the zone people read


def test_times_in_another_zone(desk_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--dsn", desk_dsn, "--tz", "Europe/Berlin", "--kind", "sensor_fault")
    assert args.func(args) == 0
    assert "2026-01-05 03:00:00 CET" in capsys.readouterr().out
    args = parse("--dsn", desk_dsn, "--tz", "Mars/Olympus")
    assert args.func(args) == 2
    assert "--tz" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--kind", "leak"], {"a1", "a3", "a6"}),
        (["--asset", "dma-07"], {"a1", "a2", "a4"}),  # the DMA and what is under it, not dma-070
        (["--asset", "dma-07*"], {"a1", "a2", "a4", "a6"}),
        (["--since", "2026-01-05T07:30+05:30"], {"a1", "a2", "a4", "a6"}),
        (["--kind", "leak", "--all", "--asset", "dma-07"], {"a1", "a5"}),
    ],
)
def test_filters(
    desk_dsn: str, capsys: pytest.CaptureFixture[str], argv: list[str], expected: set[str]
) -> None:
    args = parse("--dsn", desk_dsn, *argv)
    assert args.func(args) == 0
    assert set(ids(capsys.readouterr().out)) == expected


def test_ack_once_by_name(desk_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("ack", "a2", "--by", "asha", "--dsn", desk_dsn)
    assert args.func(args) == 0
    assert "acknowledged by asha" in capsys.readouterr().out
    again = parse("ack", "a2", "--by", "ravi", "--dsn", desk_dsn)
    assert again.func(again) == 0
    assert "already acknowledged by asha" in capsys.readouterr().out
    with psycopg.connect(desk_dsn) as conn:
        by, at = conn.execute("SELECT acked_by, acked_at FROM alerts WHERE id = 'a2'").fetchone()
    assert by == "asha" and at is not None
    missing = parse("ack", "nope", "--by", "asha", "--dsn", desk_dsn)
    assert missing.func(missing) == 1
    assert "no alert with id 'nope'" in capsys.readouterr().err


def test_missing_table_is_explained(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--dsn", pg_dsn)
    assert args.func(args) == 2
    assert "gateway db migrate" in capsys.readouterr().err


def _with(dsn: str, **change: str) -> str:
    return make_conninfo(dsn, **change)


def test_a_failed_connection_says_which_way_it_failed(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "unreachable": (_with(pg_dsn, port="1"), "cannot reach the PostgreSQL server"),
        "missing": (_with(pg_dsn, dbname="gw_no_such_db"), "does not exist (the server is up)"),
        "refused": (_with(pg_dsn, user="gw_no_such_role"), "refused authentication"),
    }
    for dsn, said in cases.values():
        args = parse("--dsn", dsn)
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert said in err, err
    assert "gateway db migrate --create" in _said(cases["missing"][0], capsys)
    assert "'gw_no_such_db'" in _said(cases["missing"][0], capsys)
    with_password = _said(_with(cases["missing"][0], password="s3cret"), capsys)
    assert "does not exist" in with_password and "s3cret" not in with_password


def _said(dsn: str, capsys: pytest.CaptureFixture[str]) -> str:
    args = parse("--dsn", dsn)
    args.func(args)
    return capsys.readouterr().err


def test_the_database_comes_from_dsn_then_config_then_environment(
    desk_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[water]\ntimezone = "Europe/Berlin"\n[sinks.central]\ntype = "postgres"\n'
        f'dsn = "{desk_dsn}"\n'
    )
    unreachable = _with(desk_dsn, port="1")
    monkeypatch.setenv("GATEWAY_DSN", unreachable)
    args = parse("-c", str(config))
    assert args.func(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "a1" in ids(out)
    assert "OPENED (Europe/Berlin)" in out  # the config's zone
    args = parse("--dsn", unreachable, "-c", str(config))  # --dsn wins
    assert args.func(args) == 2
    assert "cannot reach" in capsys.readouterr().err
    monkeypatch.setenv("GATEWAY_DSN", desk_dsn)
    args = parse()
    assert args.func(args) == 0
    assert "a1" in ids(capsys.readouterr().out)
    args = parse("-c", str(config), "ack", "a1", "--by", "asha")  # given before the action
    assert args.func(args) == 0
    assert "acknowledged by asha" in capsys.readouterr().out
    no_db = tmp_path / "no_db.toml"
    no_db.write_text('[sinks.local]\ntype = "sqlite"\n')
    args = parse("-c", str(no_db))
    assert args.func(args) == 2
    assert "no PostgreSQL sink" in capsys.readouterr().err


def test_reads_a_replay_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = 1_767_575_400 * 1_000_000_000
    leak = Alert("leak", "dma-01", Severity.WARNING, t, magnitude=1.2, score=0.7)
    burst = Alert("burst", "dma-01", Severity.CRITICAL, t + 10**12, needs_ack=True)
    lines = [leak.to_dict(), burst.to_dict(), burst.clear(t + 2 * 10**12).to_dict()]
    path = tmp_path / "alerts.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    args = parse("--from", str(path))
    assert args.func(args) == 0
    assert ids(capsys.readouterr().out) == [leak.id]  # the burst's last line says cleared
    args = parse("--from", str(path), "--all", "--kind", "burst")
    assert args.func(args) == 0
    assert ids(capsys.readouterr().out) == [burst.id]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "kind": "leak", "asset": "a"}\nnot json\n')
    args = parse("--from", str(bad))
    assert args.func(args) == 2
    assert "line 2" in capsys.readouterr().err
