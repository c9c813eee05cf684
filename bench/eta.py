"""Arrival prediction skill on the CapMetro day: ours against OneBusAway's deviation
propagation and the timetable, in the same run, scored in MBTA's bins.

    python -m bench.eta [--data DIR]

- Replays `<DIR>/avl/capmetro_2016-12-16.csv` with its GTFS through `EtaStage`, all
  three methods at once (the same matches, the same learned history).
- Actual arrivals come from the AVL itself: the stage's own trip matcher places each
  fix on its trip's stop sequence, and a stop's arrival is the time, interpolated
  between the two fixes either side, at which the vehicle passed the stop's place.
  Stops a trip's first fix was already past have no actual and are not scored.
- Bins by how long before the actual arrival the prediction was made: 0-3 min must be
  within -1/+1 min, 3-6 within -1.5/+2, 6-12 within -2.5/+3.5, 12-30 within -4/+6, the
  error being actual minus predicted. Coverage: of the (fix, stop of its trip) pairs
  whose actual arrival is 0-30 min after the fix, the share that got a prediction.
- Split fixed before scoring: vehicles with an odd id are held out, even ids are the
  tuning part. Every vehicle feeds the learning (that is causal, as in the field);
  only the scoring is split. The held-out table is the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from gateway.transit.avl import AvlFix, read_avl
from gateway.transit.matcher import Arrival
from gateway.transit.predictor import Method, Prediction, PredictorSettings
from gateway.transit.replay import make_stage, replay

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
AVL = "avl/capmetro_2016-12-16.csv"
GTFS = "avl/capmetro_gtfs_2016-12-16.zip"

# (low, high) minutes ahead of the actual arrival, and the accepted error (min)
BINS = ((0, 3, -1.0, 1.0), (3, 6, -1.5, 2.0), (6, 12, -2.5, 3.5), (12, 30, -4.0, 6.0))
METHODS = (Method.KALMAN, Method.DEVIATION, Method.SCHEDULE)

_Key = tuple[str, str, int]  # vehicle, trip, stop index


def held_out(vehicle: str) -> bool:
    # crc32, not hash(): str hashes change between processes
    return (int(vehicle) if vehicle.isdigit() else zlib.crc32(vehicle.encode())) % 2 == 1


@dataclasses.dataclass(slots=True)
class _Cell:
    n: int = 0
    ok: int = 0
    abs_err: float = 0.0


@dataclasses.dataclass
class Run:
    predictions: list[Prediction] = dataclasses.field(default_factory=list)
    actual: dict[_Key, float] = dataclasses.field(default_factory=dict)
    # per fix: vehicle, ts, trip, next stop index, number of stops
    fixes: list[tuple[str, float, str, int, int]] = dataclasses.field(default_factory=list)


def collect(data: Path, settings: PredictorSettings | None = None) -> tuple[Run, float]:
    stage = make_stage(data / GTFS, (), METHODS, settings)
    fixes = read_avl(data / AVL)
    run = Run()

    def on_fix(f: AvlFix, predictions: list[Prediction], arrivals: list[Arrival]) -> None:
        run.predictions.extend(predictions)
        for a in arrivals:
            run.actual[(a.vehicle, a.trip.trip_id, a.stop_index)] = a.ts_s
        m = stage.matcher.last(f.vehicle)
        if m is not None and m.ts_s == f.ts_s and not m.deadheading:
            run.fixes.append((f.vehicle, f.ts_s, m.trip.trip_id, m.next_stop, len(m.trip.stop_ids)))

    t0 = time.perf_counter()
    replay(stage, fixes, on_fix)
    return run, time.perf_counter() - t0


def score(run: Run, part: bool) -> tuple[dict[tuple[Method, int], _Cell], dict[Method, float]]:
    cells = {(m, b): _Cell() for m in METHODS for b in range(len(BINS))}
    made: dict[Method, set[tuple[str, float, int]]] = {m: set() for m in METHODS}
    for p in run.predictions:
        if held_out(p.vehicle) != part:
            continue
        actual = run.actual.get((p.vehicle, p.trip_id, p.stop_index))
        if actual is None:
            continue
        ahead = (actual - p.made_at_s) / 60.0
        for b, (lo, hi, early, late) in enumerate(BINS):
            if lo <= ahead < hi or (b == len(BINS) - 1 and ahead == hi):
                err = (actual - p.arrival_s) / 60.0
                c = cells[(p.method, b)]
                c.n += 1
                c.ok += early <= err <= late
                c.abs_err += abs(err) * 60.0
                made[p.method].add((p.vehicle, p.made_at_s, p.stop_index))
                break
    due = 0
    covered = dict.fromkeys(METHODS, 0)
    for vehicle, ts, trip, nxt, n in run.fixes:
        if held_out(vehicle) != part:
            continue
        for i in range(nxt, n):
            actual = run.actual.get((vehicle, trip, i))
            if actual is None:
                continue
            if actual - ts > 1800:
                break
            if actual >= ts:
                due += 1
                for m in METHODS:
                    covered[m] += (vehicle, ts, i) in made[m]
    coverage = {m: covered[m] / due if due else 0.0 for m in METHODS}
    return cells, coverage


def table(run: Run, part: bool) -> str:
    cells, coverage = score(run, part)
    head = "| method | " + " | ".join(f"{lo}-{hi} min acc / MAE" for lo, hi, *_ in BINS)
    lines = [head + " | coverage |", "|---" * (len(BINS) + 2) + "|"]
    for m in METHODS:
        row = [f"| {m.value} "]
        for b in range(len(BINS)):
            c = cells[(m, b)]
            acc = 100.0 * c.ok / c.n if c.n else float("nan")
            mae = c.abs_err / c.n if c.n else float("nan")
            row.append(f"| {acc:.1f}% / {mae:.0f} s (n={c.n}) ")
        row.append(f"| {100.0 * coverage[m]:.1f}% |")
        lines.append("".join(row))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding avl/ (default: ../shared/data beside the repository)",
    )
    args = parser.parse_args(argv)
    for rel in (AVL, GTFS):
        if not (args.data / rel).is_file():
            print(
                f"bench.eta: {(args.data / rel).resolve()} not found: this needs the CapMetro "
                "AVL day and its GTFS (CapMetrics, MIT) in <DIR>/avl; pass --data DIR",
                file=sys.stderr,
            )
            return 2
    run, seconds = collect(args.data)
    print(f"replayed {len(run.fixes)} matched fixes, 3 methods, in {seconds:.0f} s")
    print(f"{len(run.actual)} actual arrivals inferred from the AVL\n")
    print("held-out (odd vehicle ids):\n" + table(run, True) + "\n")
    print("tuning (even vehicle ids):\n" + table(run, False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
