"""The data committed in the repository (cut by scripts/slice_data.py) is small, carries its
source's licence, and holds what it was cut for."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = sorted(
    {p.parent for p in (ROOT / "tests" / "data").rglob("LICENSE*")}
    | {p.parent for p in (ROOT / "firmware_sim" / "buses" / "data").rglob("LICENSE*")}
)
AVL = ROOT / "tests" / "data" / "avl"


def test_every_data_file_is_small_and_licensed() -> None:
    files = [
        p
        for base in (ROOT / "tests" / "data", ROOT / "firmware_sim" / "buses" / "data")
        for p in base.rglob("*")
        if p.is_file() and not p.name.startswith("LICENSE") and p.suffix != ".md"
    ]
    assert len(files) >= 12
    for path in files:
        assert path.stat().st_size < 150_000, path
        # the licence sits in the file's folder or one of its parents within the slice
        assert any(folder in (path.parent, *path.parents) for folder in FOLDERS), path


def zip_rows(path: Path, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(path) as zf, zf.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, "utf-8")))


def test_capmetro_slice_keeps_late_trips_loops_and_repeated_stops() -> None:
    gtfs = AVL / "capmetro_gtfs_2016-12-16.zip"
    stops: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in zip_rows(gtfs, "stop_times.txt"):
        stops[row["trip_id"]].append(row)
    late = [t for t, rows in stops.items() if any(r["arrival_time"] >= "24:00:00" for r in rows)]
    loops = [t for t, rows in stops.items() if rows[0]["stop_id"] == rows[-1]["stop_id"]]
    repeats = [t for t, rows in stops.items() if len({r["stop_id"] for r in rows}) < len(rows)]
    assert len(late) >= 3 and len(loops) >= 3 and len(repeats) >= 3
    with (AVL / "capmetro_2016-12-16.csv").open(newline="") as fh:
        fixes = list(csv.DictReader(fh))
    assert {f["trip_id"] for f in fixes} == set(stops)  # every fix's trip is in the feed
    trips = {r["trip_id"]: r for r in zip_rows(gtfs, "trips.txt")}
    known = {r["stop_id"] for r in zip_rows(gtfs, "stops.txt")}
    assert set(trips) == set(stops)
    assert all(r["stop_id"] in known for rows in stops.values() for r in rows)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_licence_is_not_empty(folder: Path) -> None:
    (licence,) = folder.glob("LICENSE*")
    assert "Permission is hereby granted" in licence.read_text()
