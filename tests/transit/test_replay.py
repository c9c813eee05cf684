"""The `gateway eta replay` contract, on the CapMetro slice, through the command line."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.transit.replay import HEADER

DATA = Path(__file__).resolve().parents[1] / "data" / "avl"
GTFS = DATA / "capmetro_gtfs_2016-12-16.zip"
AVL = DATA / "capmetro_2016-12-16.csv"


def _replay(tmp_path: Path, avl: Path, *extra: str) -> list[dict[str, str]]:
    out = tmp_path / f"{avl.stem}-{len(extra)}.csv"
    args = ["eta", "replay", "--gtfs", str(GTFS), "--avl", str(avl), "--out", str(out), *extra]
    assert main(args) == 0
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == HEADER
        return list(reader)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    return _replay(tmp_path_factory.mktemp("eta"), AVL)


def test_rows_follow_the_contract(rows: list[dict[str, str]]) -> None:
    assert len(rows) > 1000
    with open(AVL, newline="") as f:
        fix_times = {(r["vehicle_id"], r["timestamp"]) for r in csv.DictReader(f)}
    fix_instants = {(v, dt.datetime.fromisoformat(t)) for v, t in fix_times}
    for r in rows[::37]:
        made = dt.datetime.fromisoformat(r["made_at"])
        at = dt.datetime.fromisoformat(r["predicted_arrival"])
        assert made.utcoffset() == dt.timedelta(hours=-6) == at.utcoffset()
        assert (r["vehicle_id"], made) in fix_instants  # made at a fix
        assert dt.timedelta(0) <= at - made <= dt.timedelta(minutes=30)
        assert int(r["stop_sequence"]) >= 1 and r["stop_id"] and r["trip_id"]


def test_a_fix_predicts_each_stop_once_in_order(rows: list[dict[str, str]]) -> None:
    by_fix: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        by_fix.setdefault((r["vehicle_id"], r["made_at"]), []).append(int(r["stop_sequence"]))
    for seqs in by_fix.values():
        assert seqs == sorted(set(seqs))


def test_prediction_at_t_uses_only_fixes_up_to_t(
    tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    with open(AVL, newline="") as f:
        lines = f.readlines()
    ordered = sorted(lines[1:], key=lambda line: dt.datetime.fromisoformat(line.split(",")[1]))
    cut = dt.datetime.fromisoformat(ordered[len(ordered) // 2].split(",")[1])
    head = tmp_path / "head.csv"
    head.write_text(lines[0] + "".join(ordered[: len(ordered) // 2]))
    early = _replay(tmp_path, head)
    full = [r for r in rows if dt.datetime.fromisoformat(r["made_at"]) < cut]
    assert early[: len(full)] == full


def test_history_changes_what_is_learned_not_what_is_predicted_for(
    tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    learned = _replay(tmp_path, AVL, "--history", str(AVL))
    # the same fixes predict, the next stop first; learned times move the arrivals
    first = {(r["made_at"], r["vehicle_id"]): r["stop_sequence"] for r in reversed(rows)}
    assert {(r["made_at"], r["vehicle_id"]): r["stop_sequence"] for r in reversed(learned)} == first
    assert [r["predicted_arrival"] for r in learned] != [r["predicted_arrival"] for r in rows]


def test_bad_avl_row_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    lines = AVL.read_text().splitlines()
    bad.write_text("\n".join([lines[0], lines[1], lines[2].replace("2016-12-16T", "yesterday ")]))
    code = main(["eta", "replay", "--gtfs", str(GTFS), "--avl", str(bad), "--out", "x.csv"])
    assert code == 1
    assert "row 3, field timestamp" in capsys.readouterr().err
