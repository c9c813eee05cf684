"""Leak benchmark: WNTR scenarios through `gateway replay`, scored against the truth.

    python -m bench.leaks                       # generate, replay, score (about 3-4 minutes)
    python -m bench.leaks --per-class 6 --no-leak 12 --days 28 --seed 1 --out bench/out/leaks

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
- Rates are reported per leak-size class (% of the mean inflow).
"""

from __future__ import annotations

import argparse
import json
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
    """Detection rate and median time per class, false alarms per DMA-month."""
    per_class: dict[str, list[float | None]] = {c: [] for c in SIZE_CLASSES}
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
            per_class[leak["class"]].append(None if hit is None else (hit - start) / 3600)
    out: dict[str, Any] = {"classes": {}}
    for cls, found in per_class.items():
        hours = [h for h in found if h is not None]
        out["classes"][cls] = {
            "leaks": len(found),
            "detected": len(hours),
            "rate": len(hours) / len(found) if found else float("nan"),
            "median_h": statistics.median(hours) if hours else float("nan"),
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


def run(
    out: Path, per_class: int, no_leak: int, days: int, seed: int, *, reuse: bool = False
) -> dict[str, Any]:
    t0 = time.monotonic()
    if reuse and (out / "truth.json").exists():
        truths = json.loads((out / "truth.json").read_text())
    else:
        truths = generate(out, per_class, no_leak, days, seed)
    t_gen = time.monotonic() - t0
    ours: dict[str, list[int]] = {}
    base: dict[str, list[int]] = {}
    rows = 0
    t1 = time.monotonic()
    for t in truths:
        alerts_out = out / f"{t['name']}.alerts.jsonl"
        res = replay(out / t["csv"], out / t["config"], alerts_out=alerts_out, progress=False)
        rows += res.rows
        ours[t["name"]] = [a.opened_at for a in res.alerts if a.kind in ("leak", "burst")]
        base[t["name"]] = mnf_baseline(out / t["csv"], f"{t['dma']}/inlet/flow_lps")
    t_replay = time.monotonic() - t1
    return {
        "scenarios": len(truths), "days": days, "seed": seed, "rows": rows,
        "generate_s": t_gen, "replay_s": t_replay,
        "detectors": score(truths, ours), "mnf_baseline": score(truths, base),
    }  # fmt: skip


def _table(result: dict[str, Any]) -> str:
    lines = [
        "| leak size (% of mean inflow) | leaks | detectors: found | median time | "
        "MNF baseline: found | median time |",
        "|---|---|---|---|---|---|",
    ]
    for cls in SIZE_CLASSES:
        a = result["detectors"]["classes"][cls]
        b = result["mnf_baseline"]["classes"][cls]
        lines.append(
            f"| {cls} | {a['leaks']} | {a['rate']:.0%} | {a['median_h']:.1f} h | "
            f"{b['rate']:.0%} | {b['median_h']:.1f} h |"
        )
    a, b = result["detectors"], result["mnf_baseline"]
    lines.append(
        f"| false alarms per DMA-month | | {a['false_per_dma_month']:.2f} "
        f"({a['false_alarms']} in {a['dma_months']:.1f}) | | {b['false_per_dma_month']:.2f} "
        f"({b['false_alarms']} in {b['dma_months']:.1f}) | |"
    )
    lines.append(
        f"| ... not counting alerts during hydrant flushing | | "
        f"{a['false_per_dma_month_without_flushing']:.2f} | | "
        f"{b['false_per_dma_month_without_flushing']:.2f} | |"
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
    p.add_argument("--reuse", action="store_true", help="replay the scenarios already in --out")
    args = p.parse_args(argv)
    result = run(
        Path(args.out), args.per_class, args.no_leak, args.days, args.seed, reuse=args.reuse
    )
    print(_table(result))
    print(json.dumps({k: v for k, v in result.items() if k not in ("detectors", "mnf_baseline")}))
    (Path(args.out) / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
