"""NAB scorer and benchmark: the Numenta Anomaly Benchmark, scored by NAB's own rules.

The rules (NAB v1.1, `nab/sweeper.py`), re-implemented here with numpy:

- Each file's first min(floor(0.15 n), 750) rows are probation: never scored.
- A row inside a labelled window [a, b] (width w rows) is worth, if it is a
  detection, sigma(-(b - i + 1) / w) * tpWeight / sigma(-1), where
  sigma(x) = 2 / (1 + exp(5x)) - 1 (-1 when x >= 3). Only the best (earliest)
  detection in a window counts; a window with none costs fnWeight.
- A detection outside every window costs fpWeight * sigma(|i - b_prev| / (w_prev - 1))
  after a window (b_prev, w_prev of the previous window; mild right after it),
  and fpWeight * -1 before the first window.
- A row is a detection when its score >= the threshold. The threshold is
  optimised per detector and profile over the whole corpus (every distinct
  score is tried), then each file is scored with it.
- The corpus total is normalised: 100 * (raw - null) / (perfect - null), where
  null = -fnWeight * windows (no detections) and perfect = tpWeight * windows.

    data/*.csv ──► detector (state reset per file) ──► score per row
                                                          │
    labels/combined_windows.json, config/profiles.json ──►┴──► threshold sweep ──► 0..100

Usage:
    python -m bench.nab artime            # rescore ARTime's published anomaly_score columns
    python -m bench.nab run               # our generic detector on every NAB file
    python -m bench.nab run --out bench/out/nab   # also write per-row score CSVs
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
# A detector for one file: (ts, value) of a batch -> its scores; state kept between calls.
Detect = Callable[[NDArray[np.int64], NDArray[np.float64]], NDArray[np.float64]]
PROBATION_FRACTION = 0.15


DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


class NabDataMissing(FileNotFoundError):
    pass


def nab_root(data: Path = DEFAULT_DATA) -> Path:
    """`<data>/nab`, the full Numenta Anomaly Benchmark; `data` defaults to the
    `../shared/data` beside the repository."""
    root = data / "nab"
    if not (root / "labels" / "combined_windows.json").is_file():
        raise NabDataMissing(
            f"NAB data not found at {root.resolve()}: this needs the Numenta Anomaly "
            "Benchmark (data/, labels/, config/, results/ARTime/ of "
            "https://github.com/numenta/NAB, MIT) in <DIR>/nab; pass --data DIR"
        )
    return root


@dataclasses.dataclass(frozen=True, slots=True)
class CostMatrix:
    tp: float
    fp: float
    fn: float


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class NabFile:
    """One NAB data file; `name` is its path under data/ ('realTweets/Twitter_volume_KO.csv')."""

    name: str
    ts: NDArray[np.int64]  # ns since the epoch (the files carry naive UTC-like times)
    value: NDArray[np.float64]
    windows: tuple[tuple[int, int], ...]  # first and last row index of each labelled window


def load_profiles(root: Path) -> dict[str, CostMatrix]:
    raw = json.loads((root / "config" / "profiles.json").read_text())
    return {
        name: CostMatrix(
            tp=float(p["CostMatrix"]["tpWeight"]),
            fp=float(p["CostMatrix"]["fpWeight"]),
            fn=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in raw.items()
    }


def _parse_ts(texts: Sequence[str]) -> NDArray[np.int64]:
    iso = np.array([t.strip().replace(" ", "T") for t in texts], dtype="datetime64[ns]")
    return iso.astype(np.int64)


def read_columns(path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """The named columns of a CSV file with a header, as strings."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        idx = [header.index(c) for c in columns]
        out: dict[str, list[str]] = {c: [] for c in columns}
        for row in reader:
            for c, j in zip(columns, idx, strict=True):
                out[c].append(row[j])
    return out


def load_corpus(root: Path) -> list[NabFile]:
    """Every data file with its windows as row indices, in sorted name order."""
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    files = []
    for name in sorted(windows):
        cols = read_columns(root / "data" / name, ("timestamp", "value"))
        ts = _parse_ts(cols["timestamp"])
        limits = []
        for start, end in windows[name]:
            a, b = _parse_ts([start, end])
            ia = int(np.searchsorted(ts, a))
            ib = int(np.searchsorted(ts, b))
            if ia >= len(ts) or ib >= len(ts) or ts[ia] != a or ts[ib] != b:
                raise ValueError(f"{name}: window {start}..{end} does not fall on rows")
            limits.append((ia, ib))
        files.append(NabFile(name, ts, np.array(cols["value"], np.float64), tuple(limits)))
    return files


def probation_length(n: int) -> int:
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000))


def scaled_sigmoid(x: NDArray[np.float64]) -> NDArray[np.float64]:
    with np.errstate(over="ignore"):
        y = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x >= 3.0, -1.0, y)


def sweep_scores(
    n: int, windows: Sequence[tuple[int, int]], cost: CostMatrix
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per row: the score a detection there is worth, and its window (index into
    `windows`, -1 outside every window, -2 in probation)."""
    i = np.arange(n)
    sweep = np.full(n, -1.0 * cost.fp)  # before the first window
    owner = np.full(n, -1, np.int64)
    max_tp = float(scaled_sigmoid(np.array([-1.0]))[0])
    for k, (a, b) in enumerate(windows):
        width = float(b - a + 1)
        inside = slice(a, b + 1)
        sweep[inside] = scaled_sigmoid(-(b - i[inside] + 1) / width) * cost.tp / max_tp
        owner[inside] = k
        end = windows[k + 1][0] if k + 1 < len(windows) else n
        after = slice(b + 1, end)
        sweep[after] = scaled_sigmoid(np.abs(b - i[after]) / (width - 1.0)) * cost.fp
    owner[: probation_length(n)] = -2
    return sweep, owner


@dataclasses.dataclass(frozen=True, slots=True)
class ThresholdScore:
    threshold: float
    raw: float  # summed over the corpus, before normalisation
    normalised: float  # 0 = null detector, 100 = perfect


def _normalise(raw: float, n_windows: int, cost: CostMatrix) -> float:
    null = -cost.fn * n_windows
    perfect = cost.tp * n_windows
    return 100.0 * (raw - null) / (perfect - null)


def optimise_threshold(
    files: Sequence[NabFile], scores: Sequence[NDArray[np.float64]], cost: CostMatrix
) -> ThresholdScore:
    """The threshold with the best corpus score (NAB's sweep over every distinct score)."""
    parts_score: list[NDArray[np.float64]] = []
    parts_sweep: list[NDArray[np.float64]] = []
    parts_owner: list[NDArray[np.int64]] = []
    n_windows = 0
    for f, s in zip(files, scores, strict=True):
        sweep, owner = sweep_scores(len(f.ts), f.windows, cost)
        keep = owner != -2
        parts_score.append(np.asarray(s, np.float64)[keep])
        parts_sweep.append(sweep[keep])
        own = owner[keep]
        parts_owner.append(np.where(own >= 0, own + n_windows, -1))
        n_windows += len(f.windows)
    score = np.concatenate(parts_score)
    sweep = np.concatenate(parts_sweep)
    owner = np.concatenate(parts_owner)
    # A window counts when it has scorable rows (none of NAB's windows fall in probation).
    scorable_windows = np.unique(owner[owner >= 0])
    order = np.argsort(-score, kind="stable")
    score, sweep, owner = score[order], sweep[order], owner[order]
    # Score change as each row (highest score first) becomes a detection: FP rows add
    # their sweep; a window's first detection swaps -fn for its sweep, and a later
    # detection in the same window only helps when it is earlier (larger sweep).
    delta = np.where(owner < 0, sweep, 0.0)
    best = np.full(n_windows, -cost.fn)
    win_rows = np.flatnonzero(owner >= 0)
    for j in win_rows:
        w = owner[j]
        if sweep[j] > best[w]:
            delta[j] = sweep[j] - best[w]
            best[w] = sweep[j]
    total = -cost.fn * len(scorable_windows) + np.cumsum(delta)
    # The score at threshold t counts every row with score >= t: the last row of each
    # run of equal scores.
    last_of_run = np.flatnonzero(np.r_[score[1:] != score[:-1], True])
    candidates = total[last_of_run]
    start = -cost.fn * len(scorable_windows)
    k = int(np.argmax(candidates))
    if candidates[k] <= start:  # detecting nothing is best
        return ThresholdScore(1.1, start, _normalise(start, n_windows, cost))
    raw = float(candidates[k])
    return ThresholdScore(float(score[last_of_run[k]]), raw, _normalise(raw, n_windows, cost))


def score_file(f: NabFile, score: NDArray[np.float64], threshold: float, cost: CostMatrix) -> float:
    """One file's raw NAB score at `threshold`."""
    sweep, owner = sweep_scores(len(f.ts), f.windows, cost)
    hit = (np.asarray(score) >= threshold) & (owner != -2)
    total = float(sweep[hit & (owner == -1)].sum())
    for k in range(len(f.windows)):
        in_k = hit & (owner == k)
        if (owner == k).any():
            total += float(sweep[in_k].max()) if in_k.any() else -cost.fn
    return total


@dataclasses.dataclass(frozen=True, slots=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    score: float  # normalised


def score_corpus(
    files: Sequence[NabFile],
    scores: Sequence[NDArray[np.float64]],
    profiles: dict[str, CostMatrix],
) -> list[ProfileResult]:
    """Optimise the threshold per profile, then score every file with it (NAB's
    optimise and score steps) and normalise the total."""
    out = []
    n_windows = sum(len(f.windows) for f in files)
    for name in PROFILES:
        cost = profiles[name]
        best = optimise_threshold(files, scores, cost)
        raw = sum(
            score_file(f, s, best.threshold, cost) for f, s in zip(files, scores, strict=True)
        )
        out.append(ProfileResult(name, best.threshold, raw, _normalise(raw, n_windows, cost)))
    return out


def artime_scores(root: Path, files: Sequence[NabFile]) -> list[NDArray[np.float64]]:
    """ARTime's published per-row anomaly_score for each file."""
    scores = []
    for f in files:
        category, base = f.name.split("/")
        path = root / "results" / "ARTime" / category / f"ARTime_{base}"
        col = read_columns(path, ("anomaly_score",))["anomaly_score"]
        s = np.array(col, np.float64)
        if len(s) != len(f.ts):
            raise ValueError(f"{path}: {len(s)} rows, data has {len(f.ts)}")
        scores.append(s)
    return scores


def run_detector(
    files: Sequence[NabFile],
    make: Callable[[], Detect],
    batch: int,
) -> list[NDArray[np.float64]]:
    """Stream each file through a fresh detector in batches of `batch` rows."""
    out = []
    for f in files:
        detect = make()
        parts = [
            detect(f.ts[i : i + batch], f.value[i : i + batch]) for i in range(0, len(f.ts), batch)
        ]
        out.append(np.concatenate(parts) if parts else np.empty(0))
    return out


def _print_results(title: str, results: Sequence[ProfileResult]) -> None:
    print(title)
    print(f"  {'profile':<20} {'threshold':>10} {'raw':>10} {'score':>8}")
    for r in results:
        print(f"  {r.profile:<20} {r.threshold:>10.6f} {r.raw:>10.3f} {r.score:>8.2f}")


def _write_scores(
    out: Path, files: Sequence[NabFile], scores: Sequence[NDArray[np.float64]]
) -> None:
    for f, s in zip(files, scores, strict=True):
        path = out / f.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            stamps = f.ts.astype("datetime64[ns]").astype("datetime64[s]").astype(str)
            for t, v, x in zip(stamps, f.value.tolist(), s.tolist(), strict=True):
                w.writerow([t.replace("T", " "), repr(v), repr(x)])


def detector_factory() -> Callable[[], Detect]:
    """A maker of fresh default detectors, one per file, as `run_detector` wants."""
    from gateway.analytics.anomaly import AnomalyDetector, AnomalySettings  # noqa: PLC0415

    settings = AnomalySettings()

    def make() -> Detect:
        det = AnomalyDetector(1, settings)

        def detect(ts: NDArray[np.int64], value: NDArray[np.float64]) -> NDArray[np.float64]:
            return det.score(ts, np.zeros(len(ts), np.int32), value)

        return detect

    return make


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nab",
        description="Score anomaly detectors on the Numenta Anomaly Benchmark by NAB's rules.",
        epilog=(
            "examples:\n  python -m bench.nab artime\n  python -m bench.nab run --out bench/out/nab"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding nab/ (default: ../shared/data beside the repository)",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("artime", help="rescore ARTime's published anomaly_score columns")
    run = sub.add_parser("run", help="stream every file through gateway's generic detector")
    run.add_argument("--batch", type=int, default=4096, help="rows per batch (default 4096)")
    run.add_argument("--out", type=Path, help="write per-row score CSVs under this folder")
    args = parser.parse_args(argv)

    try:
        root = nab_root(args.data)
    except NabDataMissing as err:
        print(f"bench.nab: {err}", file=sys.stderr)
        return 2
    files = load_corpus(root)
    profiles = load_profiles(root)
    if args.cmd == "artime":
        _print_results(
            "ARTime (published: 74.85 / 65.15 / 80.36)",
            score_corpus(files, artime_scores(root, files), profiles),
        )
        return 0
    make = detector_factory()
    t0 = time.perf_counter()
    scores = run_detector(files, make, args.batch)
    dt = time.perf_counter() - t0
    rows = sum(len(f.ts) for f in files)
    print(
        f"{len(files)} files, {rows} rows, detector {dt:.2f} s "
        f"({rows / dt:,.0f} rows/s incl. per-file setup)"
    )
    if args.out:
        _write_scores(args.out, files, scores)
        print(f"per-row scores written under {args.out}")
    _print_results("gateway AnomalyDetector", score_corpus(files, scores, profiles))
    return 0


if __name__ == "__main__":
    sys.exit(main())
