"""Cut the small data committed in the repository from the full sets in ../shared/data.

    python scripts/slice_data.py [--data DIR]

A clone has no ../shared, so the repository carries what it needs, each piece with
its source's licence beside it and each well under 200 KB. Run again, it writes the
same bytes (zip entries carry a fixed date), so a diff shows a real change.

    firmware_sim/buses/data/pmpml/    the simulated fleet's PMPML routes as stop chains
    firmware_sim/buses/data/cairns/   Cairns routes with one real shape each (--routes cairns)
    firmware_sim/buses/data/avl/      a day of CapMetro AVL from a few buses (--replay-avl)
    tests/data/gtfs/                  Cairns GTFS, route 110: shapes, trips, stop_times, calendar
    tests/data/avl/                   CapMetro AVL and its GTFS for a few trips: past 24:00,
                                      loops, repeated stops
    tests/data/nab/                   the first 3,000 rows of one NAB series, and a corpus of
                                      one short NAB file with ARTime's scores (corpus/)
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import shutil
import sys
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIM_DATA = ROOT / "firmware_sim" / "buses" / "data"
TEST_DATA = ROOT / "tests" / "data"
EARTH_M = 6_371_000.0
ZIP_DATE = (2026, 1, 1, 0, 0, 0)
Row = dict[str, str]

# -- PMPML: route variants to stop chains -------------------------------------------------

PMPML_ROUTES = 120  # variants the simulated fleet drives, spread over the whole list
PMPML_CORRIDOR_M = 600.0
PMPML_STOP_SPACING_M = 300.0
_ROUTE_NAME = re.compile(r"^(?P<a>.+?) to (?P<b>.+?)(?: \((?P<dir>UP|DOWN)\))?$")


def stop_chain(
    a: int, b: int, lat: np.ndarray, lon: np.ndarray, corridor_m: float = PMPML_CORRIDOR_M
) -> list[int]:
    """Stops from `a` to `b` through the real stops in a corridor between them, in
    order along the way, at most one per 300 m. PMPML publishes route variants and
    stops but no stop sequences or shapes, so this is the sequence we give them."""
    lat0 = math.radians(lat[a])
    x = np.radians(lon - lon[a]) * EARTH_M * math.cos(lat0)
    y = np.radians(lat - lat[a]) * EARTH_M
    bx, by = x[b], y[b]
    length = math.hypot(bx, by) or 1.0
    t = (x * bx + y * by) / (length * length)  # position along origin -> destination
    d = np.abs(x * by - y * bx) / length  # distance from the line
    idx = np.flatnonzero((t > 0) & (t < 1) & (d < corridor_m))
    idx = idx[np.argsort(t[idx], kind="stable")]
    chosen = [a]
    last_t = 0.0
    for i in idx:
        if (t[i] - last_t) * length >= PMPML_STOP_SPACING_M:
            chosen.append(int(i))
            last_t = float(t[i])
    chosen.append(b)
    return chosen


def slice_pmpml(src: Path, out: Path) -> None:
    stops = read_csv(src / "stops.txt")
    routes = read_csv(src / "routes.txt")
    lat = np.array([float(s["stop_lat"]) for s in stops])
    lon = np.array([float(s["stop_lon"]) for s in stops])
    by_name: dict[str, int] = {}
    for i, s in enumerate(stops):
        by_name.setdefault(s["stop_name"].lower(), i)
    usable = []
    for r in routes:
        m = _ROUTE_NAME.match(r["route_long_name"])
        a = by_name.get(m.group("a").lower()) if m else None
        b = by_name.get(m.group("b").lower()) if m else None
        if a is not None and b is not None and a != b:
            usable.append((r, a, b))
    step = len(usable) / PMPML_ROUTES
    picked = [usable[int(k * step)] for k in range(PMPML_ROUTES)]
    chains = [(r, stop_chain(a, b, lat, lon)) for r, a, b in picked]
    used = sorted({i for _, chain in chains for i in chain})
    fresh(out)
    write_csv(out / "stops.txt", ["stop_id", "stop_name", "stop_lat", "stop_lon"],
              [stops[i] for i in used])  # fmt: skip
    write_csv(out / "routes.txt", list(routes[0]), [r for r, _ in chains])
    write_csv(
        out / "route_stops.txt",
        ["route_id", "stop_sequence", "stop_id"],
        [
            {"route_id": r["route_id"], "stop_sequence": str(n + 1), "stop_id": stops[i]["stop_id"]}
            for r, chain in chains
            for n, i in enumerate(chain)
        ],
    )
    licence(src / "LICENSE-pmpml-gtfs.txt", out)


# -- Cairns ---------------------------------------------------------------------------------

CAIRNS_TEST_ROUTES = ("110-423",)  # route 110, Palm Cove to the city: 125 trips, 4 shapes


def slice_cairns(feed: Path, sim_out: Path, test_out: Path, licence_text: str) -> None:
    with zipfile.ZipFile(feed) as zf:
        tables = {n: read_zip_csv(zf, n) for n in zf.namelist()}
    # the simulator: every route with the shape of its first trip, nothing else
    shape_of: dict[str, str] = {}
    for trip in tables["trips.txt"]:
        shape_of.setdefault(trip["route_id"], trip["shape_id"])
    first_trips: dict[str, Row] = {}
    for trip in tables["trips.txt"]:
        if shape_of[trip["route_id"]] == trip["shape_id"]:
            first_trips.setdefault(trip["route_id"], trip)
    fresh(sim_out)
    write_zip(
        sim_out / "cairns_routes.zip",
        {
            "routes.txt": tables["routes.txt"],
            "trips.txt": list(first_trips.values()),
            "shapes.txt": [p for p in tables["shapes.txt"] if p["shape_id"] in shape_of.values()],
        },
    )
    (sim_out / "LICENSE-cairns-gtfs.txt").write_text(licence_text)
    # the tests: a complete feed for route 110
    trips = [t for t in tables["trips.txt"] if t["route_id"] in CAIRNS_TEST_ROUTES]
    trip_ids = {t["trip_id"] for t in trips}
    shapes = {t["shape_id"] for t in trips}
    stop_times = [s for s in tables["stop_times.txt"] if s["trip_id"] in trip_ids]
    stop_ids = {s["stop_id"] for s in stop_times}
    fresh(test_out)
    write_zip(
        test_out / "cairns_gtfs.zip",
        {
            "agency.txt": tables["agency.txt"],
            "calendar.txt": tables["calendar.txt"],
            "calendar_dates.txt": tables["calendar_dates.txt"],
            "routes.txt": [r for r in tables["routes.txt"] if r["route_id"] in CAIRNS_TEST_ROUTES],
            "trips.txt": trips,
            "stop_times.txt": stop_times,
            "stops.txt": [s for s in tables["stops.txt"] if s["stop_id"] in stop_ids],
            "shapes.txt": [p for p in tables["shapes.txt"] if p["shape_id"] in shapes],
        },
    )
    (test_out / "LICENSE-cairns-gtfs.txt").write_text(licence_text)


CAIRNS_LICENCE = """\
cairns_gtfs.zip: Cairns bus GTFS, May 2014 (agency.txt: Department of Transport and
Main Roads - TransLink Division (qconnect), Queensland). Taken from the sdist of
gtfs-kit 13.0.1 on PyPI (data/cairns_gtfs.zip), which ships it under this licence:

The MIT License (MIT)

Copyright (c) 2019 Alexander Raichev

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


# -- CapMetro ---------------------------------------------------------------------------------

AVL_SIM_BUSES = 5  # the simulator's default replay: a few buses' whole day
AVL_TEST_TRIPS = 3  # of each kind below, those with the most fixes


def slice_capmetro(avl_dir: Path, sim_out: Path, test_out: Path) -> None:
    fixes = read_csv(avl_dir / "capmetro_2016-12-16.csv")
    columns = list(fixes[0])
    per_bus: dict[str, int] = defaultdict(int)
    for f in fixes:
        per_bus[f["vehicle_id"]] += 1
    buses = sorted(per_bus, key=lambda v: (-per_bus[v], v))[:AVL_SIM_BUSES]
    fresh(sim_out)
    write_csv(sim_out / "capmetro_2016-12-16_sample.csv", columns,
              [f for f in fixes if f["vehicle_id"] in buses])  # fmt: skip
    licence(avl_dir / "LICENSE-CapMetrics.txt", sim_out)

    with zipfile.ZipFile(avl_dir / "capmetro_gtfs_2016-12-16.zip") as zf:
        tables = {n: read_zip_csv(zf, n) for n in zf.namelist()}
    times: dict[str, list[Row]] = defaultdict(list)
    for s in tables["stop_times.txt"]:
        times[s["trip_id"]].append(s)
    per_trip: dict[str, int] = defaultdict(int)
    for f in fixes:
        per_trip[f["trip_id"]] += 1

    def most_fixes(kind: Iterable[str]) -> list[str]:
        return sorted(kind, key=lambda t: (-per_trip[t], t))[:AVL_TEST_TRIPS]

    seen = [t for t in times if per_trip[t]]
    late = most_fixes(t for t in seen if any(s["arrival_time"] >= "24" for s in times[t]))
    loops = most_fixes(t for t in seen if times[t][0]["stop_id"] == times[t][-1]["stop_id"])
    repeats = most_fixes(
        t for t in seen if len({s["stop_id"] for s in times[t]}) < len(times[t]) and t not in loops
    )
    plain = most_fixes(t for t in seen if t not in {*late, *loops, *repeats})
    keep = {*late, *loops, *repeats, *plain}
    trips = [t for t in tables["trips.txt"] if t["trip_id"] in keep]
    stop_times = [s for s in tables["stop_times.txt"] if s["trip_id"] in keep]
    stop_ids = {s["stop_id"] for s in stop_times}
    route_ids = {t["route_id"] for t in trips}
    fresh(test_out)
    write_csv(test_out / "capmetro_2016-12-16.csv", columns,
              [f for f in fixes if f["trip_id"] in keep])  # fmt: skip
    write_zip(
        test_out / "capmetro_gtfs_2016-12-16.zip",
        {
            "agency.txt": tables["agency.txt"],
            "calendar.txt": tables["calendar.txt"],
            "feed_info.txt": tables["feed_info.txt"],
            "routes.txt": [r for r in tables["routes.txt"] if r["route_id"] in route_ids],
            "trips.txt": trips,
            "stop_times.txt": stop_times,
            "stops.txt": [s for s in tables["stops.txt"] if s["stop_id"] in stop_ids],
        },
    )
    licence(avl_dir / "LICENSE-CapMetrics.txt", test_out)
    print(f"capmetro trips: past 24:00 {late}, loops {loops}, repeated stops {repeats}, "
          f"plain {plain}")  # fmt: skip


# -- NAB ---------------------------------------------------------------------------------------

NAB_FILE = "realKnownCause/machine_temperature_system_failure.csv"
NAB_ROWS = 3000
# a corpus of one short file (three windows) laid out as NAB is, for the scorer: data, windows,
# cost profiles, ARTime's per-row scores and its published per-file scores
NAB_CORPUS = ("realAdExchange/exchange-3_cpc_results.csv",)
NAB_PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def slice_nab(nab: Path, out: Path) -> None:
    with (nab / "data" / NAB_FILE).open(newline="") as fh:
        rows = list(csv.reader(fh))[: NAB_ROWS + 1]
    fresh(out)
    with (out / Path(NAB_FILE).name).open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    licence(nab / "LICENSE.txt", out)
    corpus = out / "corpus"
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
    (corpus / "labels").mkdir(parents=True)
    (corpus / "config").mkdir()
    picked = {name: windows[name] for name in NAB_CORPUS}
    (corpus / "labels" / "combined_windows.json").write_text(json.dumps(picked, indent=1) + "\n")
    shutil.copyfile(nab / "config" / "profiles.json", corpus / "config" / "profiles.json")
    artime = nab / "results" / "ARTime"
    for name in NAB_CORPUS:
        (corpus / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nab / "data" / name, corpus / "data" / name)
        category, base = name.split("/")
        result = corpus / "results" / "ARTime" / category / f"ARTime_{base}"
        result.parent.mkdir(parents=True, exist_ok=True)
        write_csv(
            result, ["timestamp", "anomaly_score"], read_csv(artime / category / f"ARTime_{base}")
        )
    for profile in NAB_PROFILES:
        table = artime / f"ARTime_{profile}_scores.csv"
        scores = read_csv(table)
        write_csv(corpus / "results" / "ARTime" / table.name, list(scores[0]),
                  [r for r in scores if r["File"] in NAB_CORPUS])  # fmt: skip


# -- files -------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def read_zip_csv(zf: zipfile.ZipFile, name: str) -> list[Row]:
    with zf.open(name) as fh:
        return list(csv.DictReader(io.TextIOWrapper(fh, "utf-8-sig")))


def _csv_text(columns: Sequence[str], rows: Iterable[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Row]) -> None:
    path.write_text(_csv_text(columns, rows))


def write_zip(path: Path, tables: dict[str, list[Row]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, rows in tables.items():
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, _csv_text(list(rows[0]) if rows else [], rows))


def fresh(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def licence(src: Path, folder: Path) -> None:
    shutil.copyfile(src, folder / src.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT / ".." / "shared" / "data",
        help="the full data sets (default: %(default)s)",
    )
    data = parser.parse_args(argv).data
    needed = [
        data / "gtfs" / "pmpml" / "stops.txt",
        data / "gtfs" / "cairns_gtfs.zip",
        data / "avl" / "capmetro_2016-12-16.csv",
        data / "nab" / "data" / NAB_FILE,
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        print(
            "slice_data: missing " + ", ".join(missing) + "; point --data at the folder of "
            "the full data sets (its README.md says where each comes from)",
            file=sys.stderr,
        )
        return 2
    slice_pmpml(data / "gtfs" / "pmpml", SIM_DATA / "pmpml")
    slice_cairns(
        data / "gtfs" / "cairns_gtfs.zip",
        SIM_DATA / "cairns",
        TEST_DATA / "gtfs",
        CAIRNS_LICENCE,
    )
    slice_capmetro(data / "avl", SIM_DATA / "avl", TEST_DATA / "avl")
    slice_nab(data / "nab", TEST_DATA / "nab")
    for folder in (SIM_DATA, TEST_DATA):
        for path in sorted(folder.rglob("*.*")):
            print(f"{path.stat().st_size:>9,}  {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
