"""Leak benchmark: WNTR scenarios through `gateway replay`, scored against the truth.

    python -m bench.leaks                       # generate, replay, score (about 3-4 minutes)
    python -m bench.leaks --per-class 6 --no-leak 12 --days 28 --seed 1 --out bench/out/leaks
    python -m bench.leaks --intervals 1,5,15,60  # the same scenarios as loggers store them

For each scenario (see `bench.leak_scenarios`) the CSV is replayed with
`gateway.replay.replay` (the function behind `gateway replay`, default
settings), and, in the same run, by a minimum-night-flow-only baseline: the
classic rule, the 02:00-04:00 mean inflow above the median of the previous 14
nights by more than 3 robust standard deviations.

Scoring:
- A leak is detected by the first `leak` or `burst` alert on its DMA opened at
  or after the leak's start; time to detect = opened_at - start.
- A false alarm is a `leak` or `burst` alert opened after the first 7 days
  (warm-up) and before the leak's start (or anywhere, without a leak).
  DMA-months = the days so scored / 30.
- Rates are reported per leak-size class (% of the mean inflow), with the
  rate adjusted for chance beside them: the share of those leaks that random
  alarms at the detector's own false-alarm rate would have "found" in the same
  window (from the start to the end of the file, or 6 h and 24 h), i.e.
  1 - exp(-rate x window) per leak. An alarm-happy detector finds leaks by luck.
- With `--intervals`, each scenario is also replayed as a logger stores it every
  N minutes (`bench.leak_scenarios.logged`), the baseline on the same file.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.leak_scenarios import SIZE_CLASSES, T0, generate
from gateway.readings_csv import parse_readings
from gateway.replay import replay

WARMUP_S = 7 * 86_400
NIGHT = (120, 240)  # local minutes of day


def mnf_baseline(csv: Path, flow_stream: str, z: float = 3.0) -> list[int]:
    """Alarm times (ns) of the classic minimum-night-flow rule, night by night."""
    parsed = parse_readings(csv)
    names = list(parsed.names)
    sel = parsed.name_index == names.index(flow_stream)
    ts = parsed.ts[sel] // 1_000_000_000
    q = parsed.value[sel]
    local = (ts - T0) // 60
    day = local // 1440
    mod = local % 1440
    night = (mod >= NIGHT[0]) & (mod < NIGHT[1]) & np.isfinite(q)
    history: list[float] = []
    alarms = []
    for d in np.unique(day[night]):
        value = float(q[night & (day == d)].mean())
        if len(history) >= 6:
            recent = np.asarray(history[-14:])
            med = float(np.median(recent))
            sigma = max(1.4826 * float(np.median(np.abs(recent - med))), 0.02 * med, 0.02)
            if value - med > z * sigma:
                alarms.append(int((T0 + d * 86_400 + NIGHT[1] * 60) * 1_000_000_000))
                continue  # do not learn the alarm
        history.append(value)
    return alarms


def score(truths: list[dict[str, Any]], opened: dict[str, list[int]]) -> dict[str, Any]:
    """Detection rate and median time per class, false alarms per DMA-month, and
    what random alarms at that false-alarm rate would have hit."""
    per_class: dict[str, list[tuple[float | None, float, str]]] = {c: [] for c in SIZE_CLASSES}
    false_alarms = 0
    during_flushing = 0
    scored_s = 0.0
    for t in truths:
        times = sorted(opened.get(t["name"], []))
        end = T0 + t["days"] * 86_400
        leak = t["leak"]
        start = leak["start"] if leak else end
        scored_s += max(0, start - (T0 + WARMUP_S))
        false = [a / 1e9 for a in times if T0 + WARMUP_S <= a / 1e9 < start]
        false_alarms += len(false)
        flushes = [(n["start"], n["start"] + 60 * (n["minutes"] + 60))
                   for n in t["nuisances"] if n["kind"] == "hydrant_flushing"]  # fmt: skip
        during_flushing += sum(1 for a in false if any(lo <= a <= hi for lo, hi in flushes))
        if leak:
            hit = next((a / 1e9 for a in times if a / 1e9 >= start), None)
            hours = None if hit is None else (hit - start) / 3600
            per_class[leak["class"]].append((hours, (end - start) / 3600, leak["kind"]))
    rate_h = false_alarms / (scored_s / 3600) if scored_s else 0.0  # false alarms per hour
    out: dict[str, Any] = {"classes": {}}
    for cls, found in per_class.items():
        hours = [h for h, _, _ in found if h is not None]
        n = len(found)

        def chance(
            window_h: float | None, found: list[tuple[float | None, float, str]] = found
        ) -> float:
            # a random alarm process at the false-alarm rate: P(>= 1 alarm in the window)
            return sum(1 - math.exp(-rate_h * (w if window_h is None else min(w, window_h)))
                       for _, w, _ in found)  # fmt: skip

        def within(limit: float, hours: list[float] = hours) -> int:
            return sum(1 for h in hours if h <= limit)

        out["classes"][cls] = {
            "leaks": n,
            "detected": len(hours),
            "rate": len(hours) / n if n else float("nan"),
            "median_h": statistics.median(hours) if hours else float("nan"),
            "within_6h": within(6.0) / n if n else float("nan"),
            "within_24h": within(24.0) / n if n else float("nan"),
            "chance": chance(None) / n if n else float("nan"),
            "chance_6h": chance(6.0) / n if n else float("nan"),
            "chance_24h": chance(24.0) / n if n else float("nan"),
            "by_kind": {
                kind: {
                    "leaks": sum(1 for _, _, k in found if k == kind),
                    "detected": sum(1 for h, _, k in found if k == kind and h is not None),
                    "median_h": statistics.median(
                        [h for h, _, k in found if k == kind and h is not None] or [math.nan]
                    ),
                }
                for kind in ("abrupt", "growing")
            },
        }
    months = scored_s / 86_400 / 30
    out["false_alarms"] = false_alarms
    out["dma_months"] = months
    out["false_per_dma_month"] = false_alarms / months if months else float("nan")
    # a flushed hydrant is a real, sudden extra flow: reported apart, still counted above
    out["false_during_flushing"] = during_flushing
    out["false_per_dma_month_without_flushing"] = (
        (false_alarms - during_flushing) / months if months else float("nan")
    )
    return out


def csv_of(out: Path, truth: dict[str, Any], minutes: int) -> Path:
    return out / truth["csv"] if minutes == 1 else out / f"i{minutes}" / truth["csv"]


def run(
    out: Path,
    per_class: int,
    no_leak: int,
    days: int,
    seed: int,
    *,
    intervals: tuple[int, ...] = (1,),
    reuse: bool = False,
) -> dict[str, Any]:
    t0 = time.monotonic()
    if reuse and (out / "truth.json").exists():
        truths = json.loads((out / "truth.json").read_text())
    else:
        truths = generate(out, per_class, no_leak, days, seed, intervals=intervals)
    t_gen = time.monotonic() - t0
    missing = [m for m in intervals if m > 1 and not (out / f"i{m}").is_dir()]
    if missing:
        raise SystemExit(f"bench.leaks: {out} has no i{missing[0]}/: run once without --reuse")
    result: dict[str, Any] = {
        "scenarios": len(truths), "days": days, "seed": seed, "generate_s": t_gen,
        "intervals": {},
    }  # fmt: skip
    for minutes in intervals:
        ours: dict[str, list[int]] = {}
        base: dict[str, list[int]] = {}
        rows = 0
        t1 = time.monotonic()
        for t in truths:
            csv = csv_of(out, t, minutes)
            alerts_out = csv.with_suffix(".alerts.jsonl")
            res = replay(csv, out / t["config"], alerts_out=alerts_out, progress=False)
            rows += res.rows
            ours[t["name"]] = [a.opened_at for a in res.alerts if a.kind in ("leak", "burst")]
            base[t["name"]] = mnf_baseline(csv, f"{t['dma']}/inlet/flow_lps")
        result["intervals"][str(minutes)] = {
            "rows": rows, "replay_s": time.monotonic() - t1,
            "detectors": score(truths, ours), "mnf_baseline": score(truths, base),
        }  # fmt: skip
    return result


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0%}"


def _h(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f} h"


def _table(result: dict[str, Any]) -> str:
    lines = [
        "| interval | leak size (% of inflow) | leaks | found (by chance) | ≤ 6 h | ≤ 24 h "
        "| median | growing: found, median | MNF baseline: found (by chance) | median |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for minutes, r in result["intervals"].items():
        for cls in SIZE_CLASSES:
            a = r["detectors"]["classes"][cls]
            b = r["mnf_baseline"]["classes"][cls]
            g = a["by_kind"]["growing"]
            lines.append(
                f"| {minutes} min | {cls} | {a['leaks']} | {_pct(a['rate'])} "
                f"({_pct(a['chance'])}) | {_pct(a['within_6h'])} | {_pct(a['within_24h'])} "
                f"| {_h(a['median_h'])} | {g['detected']}/{g['leaks']}, {_h(g['median_h'])} "
                f"| {_pct(b['rate'])} ({_pct(b['chance'])}) | {_h(b['median_h'])} |"
            )
        a, b = r["detectors"], r["mnf_baseline"]
        lines.append(
            f"| {minutes} min | false alarms per DMA-month | | {a['false_per_dma_month']:.2f} "
            f"({a['false_alarms']} in {a['dma_months']:.1f}; "
            f"{a['false_during_flushing']} in flushing) | | | | "
            f"| {b['false_per_dma_month']:.2f} ({b['false_alarms']}) | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="bench/out/leaks", help="scenario folder (not committed)")
    p.add_argument("--per-class", type=int, default=6, help="scenarios per size class and kind")
    p.add_argument("--no-leak", type=int, default=12, help="scenarios without a leak")
    p.add_argument("--days", type=int, default=28)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--intervals", default="1", help="reporting intervals to replay, minutes: e.g. 1,5,15,60"
    )
    p.add_argument("--reuse", action="store_true", help="replay the scenarios already in --out")
    args = p.parse_args(argv)
    intervals = tuple(int(x) for x in args.intervals.split(","))
    result = run(
        Path(args.out), args.per_class, args.no_leak, args.days, args.seed,
        intervals=intervals, reuse=args.reuse,
    )  # fmt: skip
    print(_table(result))
    timing = {m: round(r["replay_s"], 1) for m, r in result["intervals"].items()}
    gen_s = round(result["generate_s"], 1)
    print(json.dumps({"scenarios": result["scenarios"], "generate_s": gen_s, "replay_s": timing}))
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
