"""Kernel throughput: samples/s on one core, our numba path against numpy, pandas and river.

Every contender does a comparable job on the same synthetic stream (a noisy daily
cycle with spikes and a level shift), in the same run, so the ratios hold on any
machine:

- gateway AnomalyDetector: the full generic detector (robust levels, 5 surprise
  terms, likelihood, damping), state carried across batches of `--batch` samples.
- gateway kernels: ewma + two-sided CUSUM on the same batches (the cheap path the
  water detectors build on).
- numpy: a rolling z-score (window `--window`) from cumulative sums, per batch with
  the previous window's tail carried over: vectorised, no Python loop per sample.
- pandas: `Series.rolling(window).mean()/std()` z-score on the same batches with the
  same tail carried over.
- river: `anomaly.HalfSpaceTrees` `score_one` + `learn_one` per sample (its
  documented streaming loop), on the first `--river-samples` samples only and
  extrapolated: it is too slow to run on the whole stream. Values are min-max
  scaled with bounds from the data first (river's trees need [0, 1] features),
  which favours river.

Usage:
    python -m bench.kernels                  # 4,000,000 samples, batches of 65,536
    python -m bench.kernels --samples 20000000 --batch 1048576
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.analytics import kernels
from gateway.analytics.anomaly import AnomalyDetector
from gateway.analytics.anomaly import warm_up as anomaly_warm_up

F64 = NDArray[np.float64]


def make_stream(n: int, seed: int = 7) -> tuple[NDArray[np.int64], NDArray[np.int32], F64]:
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.int64) * kernels.NS_PER_S  # 1 Hz
    day = 2 * np.pi * np.arange(n) / 86_400
    x = 50 + 10 * np.sin(day) + rng.normal(0, 1, n)
    x[rng.integers(0, n, max(1, n // 10_000))] += 15
    x[n // 2 :] += 5
    return t, np.zeros(n, np.int32), x


def _time(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_detector(ts: NDArray[np.int64], stream: NDArray[np.int32], x: F64, batch: int) -> float:
    def run() -> None:
        det = AnomalyDetector(1)
        for i in range(0, len(x), batch):
            det.score(ts[i : i + batch], stream[i : i + batch], x[i : i + batch])

    return _time(run)


def bench_kernels(stream: NDArray[np.int32], x: F64, batch: int) -> float:
    mean = np.empty(batch)
    var = np.empty(batch)
    pos = np.empty(batch)
    neg = np.empty(batch)
    alarm = np.empty(batch, np.int8)

    def run() -> None:
        ew = kernels.new_ewma_state(1)
        cs = kernels.new_cusum_state(1)
        for i in range(0, len(x), batch):
            xs = x[i : i + batch]
            st = stream[i : i + batch]
            n = len(xs)
            kernels.ewma(st, xs, 0.01, ew, mean[:n], var[:n])
            z = (xs - mean[:n]) / np.sqrt(var[:n] + 1e-12)
            kernels.cusum_two_sided(st, z, 0.5, 5.0, cs, pos[:n], neg[:n], alarm[:n])

    return _time(run)


def _rolling_z_numpy(xs: F64, window: int) -> F64:
    c1 = np.concatenate(([0.0], np.cumsum(xs)))
    c2 = np.concatenate(([0.0], np.cumsum(xs * xs)))
    m = (c1[window:] - c1[:-window]) / window
    v = (c2[window:] - c2[:-window]) / window - m * m
    return (xs[window - 1 :] - m) / np.sqrt(np.maximum(v, 1e-12))


def bench_numpy(x: F64, batch: int, window: int) -> float:
    def run() -> None:
        tail = x[:0]
        for i in range(0, len(x), batch):
            xs = np.concatenate((tail, x[i : i + batch]))
            if len(xs) >= window:
                _rolling_z_numpy(xs, window)
            tail = xs[-(window - 1) :]

    return _time(run)


def bench_pandas(x: F64, batch: int, window: int) -> float:
    import pandas as pd  # type: ignore[import-untyped]  # noqa: PLC0415 - a dev extra

    def run() -> None:
        tail = x[:0]
        for i in range(0, len(x), batch):
            xs = np.concatenate((tail, x[i : i + batch]))
            s = pd.Series(xs)
            r = s.rolling(window)
            ((s - r.mean()) / r.std()).to_numpy()
            tail = xs[-(window - 1) :]

    return _time(run)


def bench_river(x: F64, n: int) -> float:
    from river import anomaly  # noqa: PLC0415 - a dev extra

    lo, hi = float(x.min()), float(x.max())
    xs = ((x[:n] - lo) / (hi - lo)).tolist()

    def run() -> None:
        model: Any = anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=1)
        for v in xs:
            f = {"x": v}
            model.score_one(f)
            model.learn_one(f)

    return _time(run, repeat=1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.kernels",
        description="Samples/s per core of the analytics kernels against numpy, pandas, river.",
        epilog="example:\n  python -m bench.kernels --samples 4000000 --batch 65536",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--samples", type=int, default=4_000_000)
    parser.add_argument("--batch", type=int, default=65_536)
    parser.add_argument("--window", type=int, default=300, help="rolling window (numpy, pandas)")
    parser.add_argument("--river-samples", type=int, default=20_000)
    parser.add_argument("--no-river", action="store_true", help="skip river")
    parser.add_argument("--no-pandas", action="store_true", help="skip pandas")
    args = parser.parse_args(argv)

    kernels.warm_up()
    anomaly_warm_up()
    ts, stream, x = make_stream(args.samples)
    n = len(x)
    rates: dict[str, float] = {}
    rates["gateway AnomalyDetector"] = n / bench_detector(ts, stream, x, args.batch)
    rates["gateway ewma+cusum kernels"] = n / bench_kernels(stream, x, args.batch)
    rates["numpy rolling z-score"] = n / bench_numpy(x, args.batch, args.window)
    if not args.no_pandas:
        rates["pandas rolling z-score"] = n / bench_pandas(x, args.batch, args.window)
    if not args.no_river:
        m = min(args.river_samples, n)
        rates[f"river HalfSpaceTrees ({m:,} samples, extrapolated)"] = m / bench_river(x, m)

    ours = rates["gateway AnomalyDetector"]
    print(f"{n:,} samples, batches of {args.batch:,}, one core (numba nogil, no parallel)")
    print(f"  {'contender':<52} {'samples/s':>14} {'detector is':>12}")
    for name, r in rates.items():
        print(f"  {name:<52} {r:>14,.0f} {ours / r:>11.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
