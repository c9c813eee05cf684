"""`gateway replay`: run recorded readings through the detectors, offline. A contract.

    gateway replay --readings FILE.csv --config FILE.toml [--alerts-out FILE.jsonl]
                   [--scores-out FILE.csv] [--fast | --speed N] [--plot FILE.png]
                   [--skip-bad] [--batch-rows N]

Input CSV: header `ts,stream,value` with an optional fourth column `quality`.
`ts` is ISO 8601 with an offset (`2026-01-05T02:00:00+05:30`, `...Z`) or epoch
seconds (`1767225600.25`); rows are sorted by ts. `value` is a number (`nan`
and `inf` are values, judged by the detectors, not bad rows); `quality` is the
`gateway.batch.Quality` bits, 0 when absent. `stream` is `<asset>/<quantity>`.
Streams may report at any interval from 1 s to 60 min, each its own, learned
from the data or set in `[[dma]] interval_s` / `intervals`: a flow reading is
taken as the mean of the interval that ends at its ts, a pressure as a sample.

Config TOML: the gateway's `[[dma]]` tables and optional `[water]` table (see
`gateway.analytics.water_settings`); other sections are ignored here. With no
`[[dma]]` only `--scores-out` has anything to say (e.g. for a NAB file).

    CSV --parse (vectorised)--> ReadingBatch --batches of --batch-rows--> WaterDetectors
                                      |                                       | alerts
                                      +--> AnomalyDetector --> --scores-out   v
                                                                         --alerts-out

Outputs:
- `--alerts-out`: one JSON object per alert in its final state (opened, updated
  or cleared), in order of `detected_at`, keys sorted (docs/alerts-jsonl.md):
    {"asset": "dma-01", "cleared_at": null, "detected_at": "2026-01-09T10:50:00+05:30",
     "evidence": {"detectors": ["burst"], ...}, "id": "3f0c...", "kind": "burst",
     "magnitude": 4.02, "message": "...", "needs_ack": false,
     "opened_at": "2026-01-09T10:50:00+05:30",
     "score": 0.75, "severity": "warning", "started_at": "2026-01-09T10:45:00+05:30",
     "state": "opened", "unit": "L/s", "updated_at": null}
  `kind` is leak, burst, transient or sensor_fault; `asset` is the DMA's name
  for DMA-level alerts (leak, burst), else the pressure point or stream;
  `detected_at` (= `opened_at`) is the data time it was raised, `started_at`
  the estimated start; times are ISO 8601 in the `[water] timezone` with its
  offset, like the replay CSV; `magnitude` is in `unit` (L/s for leaks and
  bursts, m for transients, the stream's unit for sensor faults), rounded to
  4 decimals like `score` (0-1); null where unknown.
- `--scores-out`: `ts,stream,value,score`, one row per input row in input
  order; ts, stream and value as read; the score of the generic detector
  (`gateway.analytics.anomaly`) as `repr(float)`, full precision.
- `--plot`: per DMA, inflow and pressures (1-minute means) with alerts marked.

Replay is causal and deterministic: the same file gives the same alerts
whatever `--batch-rows`. A bad row (wrong column count, unparsable ts, value
or quality, bad stream name) is reported by line number; the run stops there
(the rows before it are processed and written, exit status 1) unless
`--skip-bad` is given, in which case bad rows are counted and left out.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import math
import sys
import time
import zoneinfo
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.analytics.aggregate import AggregateStage
from gateway.analytics.anomaly import AnomalyDetector
from gateway.analytics.water import WaterDetectors
from gateway.analytics.water_settings import DmaSettings, WaterSettings
from gateway.batch import AggregateBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.events import Alert, AlertState, jsonable
from gateway.helptext import HelpFormatter
from gateway.readings_csv import ParsedCsv, ReplayError, parse_readings
from gateway.settings import load_settings
from gateway.streams import StreamRegistry

_PROGRESS_ROWS = 100_000  # files shorter than this get no progress bar
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def load_water_config(path: Path) -> tuple[list[DmaSettings], WaterSettings]:
    """The `[[dma]]` array and the optional `[water]` table of a gateway TOML
    (the whole file is checked, as `gateway run` would)."""
    settings = load_settings(path)
    return list(settings.dma), settings.water


@dataclasses.dataclass(slots=True)
class ReplayResult:
    alerts: list[Alert]  # final state of every alert, by opened_at
    rows: int  # rows replayed
    bad_rows: int
    stopped_at_line: int | None  # the bad line that stopped the run, if any
    stopped_reason: str
    counters: dict[str, int]
    scores: NDArray[np.float64] | None = None


def _final_states(transitions: Sequence[Alert]) -> list[Alert]:
    latest: dict[str, Alert] = {}
    for a in transitions:
        latest[a.id] = a
    return sorted(latest.values(), key=lambda a: (a.opened_at, a.kind, a.asset, a.id))


_UNITS = {"leak": "L/s", "burst": "L/s", "transient": "m"}
_SUFFIX_UNITS = {"_lps": "L/s", "_m": "m"}


def _unit(alert: Alert) -> str | None:
    if alert.kind in _UNITS:
        return _UNITS[alert.kind]
    for suffix, unit in _SUFFIX_UNITS.items():
        if alert.asset.endswith(suffix):
            return unit
    return None


def iso_time(ns: int | None, zone: dt.tzinfo) -> str | None:
    """Data time (ns UTC) as ISO 8601 in `zone` with its offset; microseconds only
    when there are any."""
    if ns is None:
        return None
    when = _EPOCH + dt.timedelta(microseconds=ns // 1000)
    return when.astimezone(zone).isoformat()


def _rounded(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


def alert_json(alert: Alert, zone: dt.tzinfo = dt.UTC) -> dict[str, Any]:
    """An alert as a line of the alerts JSONL contract (strict JSON: NaN and inf are null)."""
    at = iso_time(alert.opened_at, zone)
    return {
        "asset": alert.asset,
        "cleared_at": iso_time(alert.cleared_at, zone),
        "detected_at": at,
        "evidence": jsonable(dict(alert.evidence)),
        "id": alert.id,
        "kind": alert.kind,
        "magnitude": _rounded(alert.magnitude),
        "message": alert.message,
        "needs_ack": alert.needs_ack,
        "opened_at": at,
        "score": _rounded(alert.score),
        "severity": alert.severity.name.lower(),
        "started_at": iso_time(alert.started_at, zone),
        "state": alert.state.value,
        "unit": _unit(alert),
        "updated_at": iso_time(alert.updated_at, zone),
    }


def replay(
    readings: Path,
    config: Path,
    *,
    alerts_out: Path | None = None,
    scores_out: Path | None = None,
    speed: float | None = None,
    plot: Path | None = None,
    skip_bad: bool = False,
    batch_rows: int = 50_000,
    progress: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Replay a CSV through the water detectors (and the generic one for scores).
    With `speed`, data time is paced on `clock` with `sleep` (tests pass a fake pair)."""
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    dmas, water = load_water_config(config)
    parsed = parse_readings(readings)
    stop_line, stop_reason = None, ""
    n = len(parsed.ts)
    if parsed.bad and not skip_bad:
        stop_line, stop_reason = parsed.bad[0]
        n = int(np.searchsorted(parsed.line, stop_line))
    registry = StreamRegistry()
    aggregator = AggregateStage(registry)
    detectors = WaterDetectors(registry, dmas, water)
    ids = np.asarray([registry.register(str(name)) for name in parsed.names], np.int32)
    stream = ids[parsed.name_index[:n]] if n else np.zeros(0, np.int32)
    batch = ReadingBatch(parsed.ts[:n], stream, parsed.value[:n], parsed.quality[:n])
    scorer = AnomalyDetector(len(registry)) if scores_out else None
    scores = np.empty(n) if scorer else None
    transitions: list[Alert] = []
    aggregates: list[AggregateBatch] = []
    wall0 = clock()
    bar = _progress(n, enabled=progress and n >= _PROGRESS_ROWS)
    for lo in range(0, n, batch_rows):
        part = batch[lo : lo + batch_rows]
        if speed:
            due = wall0 + (int(part.ts[0]) - int(batch.ts[0])) / 1e9 / speed
            sleep(max(0.0, due - clock()))
        if scorer is not None and scores is not None:
            scores[lo : lo + len(part)] = scorer.score(part.ts, part.stream, part.value)
        out = detectors.process(aggregator.process(Bundle(readings=part)))
        transitions += out.alerts
        if plot and len(out.aggregates):
            aggregates.append(out.aggregates)
        bar(len(part))
    bar(0, done=True)
    alerts = _final_states(transitions)
    if alerts_out:
        zone = zoneinfo.ZoneInfo(water.timezone)
        with open(alerts_out, "w") as fh:
            for a in alerts:
                fh.write(json.dumps(alert_json(a, zone), sort_keys=True, allow_nan=False) + "\n")
    if scores_out and scores is not None:
        _write_scores(scores_out, parsed, n, scores)
    if plot:
        plot_dmas(plot, dmas, registry, AggregateBatch.concat(aggregates), alerts)
    names = ("bad_values", "out_of_order", "late", "clock_jumps", "gaps")
    counters = {k: int(v) for k, v in zip(names, detectors.counters, strict=True)}
    return ReplayResult(alerts, n, len(parsed.bad), stop_line, stop_reason, counters, scores)


def _write_scores(path: Path, parsed: ParsedCsv, n: int, scores: NDArray[np.float64]) -> None:
    ts_t, st_t, va_t = parsed.raw
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["ts", "stream", "value", "score"])
        w.writerows(zip(ts_t[:n], st_t[:n], va_t[:n], map(repr, scores.tolist()), strict=True))


class _Bar:
    """A plain stderr progress bar (no dependency), redrawn at most 4 times a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.last = total, enabled, 0, 0.0

    def __call__(self, rows: int, *, done: bool = False) -> None:
        if not self.enabled:
            return
        self.done += rows
        now = time.monotonic()
        if not done and now - self.last < 0.25:
            return
        self.last = now
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * 30)
        sys.stderr.write(f"\rreplay [{'#' * filled}{'.' * (30 - filled)}] {frac:6.1%}")
        sys.stderr.write(f" {self.done:,}/{self.total:,} rows")
        if done:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _progress(total: int, *, enabled: bool) -> _Bar:
    return _Bar(total, enabled)


_KIND_COLOURS = {"leak": "tab:red", "burst": "tab:purple", "transient": "tab:orange"}


def plot_dmas(
    path: Path,
    dmas: Sequence[DmaSettings],
    registry: StreamRegistry,
    aggregates: AggregateBatch,
    alerts: Sequence[Alert],
) -> None:
    """One panel per DMA: summed inflow (left axis), pressures (right), alerts as lines."""
    import matplotlib  # noqa: PLC0415 - slow to import, needed only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(len(dmas), 1, figsize=(12, 3.2 * len(dmas)), squeeze=False)
    for ax, dma in zip(axes[:, 0], dmas, strict=True):
        inflow: dict[int, float] = {}
        for name in dma.inflow:
            sel = aggregates.stream == registry.id_of(name)
            for t, v in zip(
                aggregates.ts[sel].tolist(), aggregates.mean[sel].tolist(), strict=True
            ):
                inflow[t] = inflow.get(t, 0.0) + v
        if inflow:
            t = np.asarray(sorted(inflow), "datetime64[ns]")
            ax.plot(t, [inflow[k] for k in sorted(inflow)], lw=0.6, color="tab:blue")
        ax.set_ylabel("inflow (L/s)")
        ax.set_title(dma.name, loc="left", fontsize=10)
        twin = ax.twinx()
        for name in dma.pressure:
            sel = aggregates.stream == registry.id_of(name)
            times = aggregates.ts[sel].astype("datetime64[ns]")
            label = name.rpartition("/")[0]
            twin.plot(times, aggregates.mean[sel], lw=0.5, alpha=0.7, label=label)
        twin.set_ylabel("pressure (m)")
        if dma.pressure:
            twin.legend(loc="upper right", fontsize=7)
        streams = set(dma.streams())
        for a in alerts:
            if a.asset == dma.name or a.asset in streams or a.asset.startswith(dma.name + "/"):
                colour = _KIND_COLOURS.get(a.kind, "tab:gray")
                ax.axvline(np.datetime64(a.opened_at, "ns"), color=colour, lw=1.0, ls="--")
                where = (np.datetime64(a.opened_at, "ns"), 1.0)
                ax.annotate(a.kind, where, xycoords=("data", "axes fraction"), fontsize=7,
                            color=colour, rotation=90, va="top")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- CLI
EXAMPLES = """\
examples:
  gateway replay --readings dma01.csv --config dma.toml --alerts-out alerts.jsonl
  gateway replay --readings nab.csv --config nab.toml --scores-out scores.csv --fast
  gateway replay --readings dma01.csv --config dma.toml --plot dma01.png --skip-bad
  gateway replay --readings live.csv --config dma.toml --speed 60   # 1 h of data per minute
  gateway replay --recording var/rec-0412 --alerts-out alerts.jsonl  # all traffic, all stages
"""


def _run(args: argparse.Namespace) -> int:
    if args.recording:
        from gateway.recording_replay import run_cli  # noqa: PLC0415 - loads the whole gateway

        return run_cli(args)
    if not args.config:
        print("gateway replay: --readings needs --config FILE.toml", file=sys.stderr)
        return 2
    try:
        result = replay(
            Path(args.readings),
            Path(args.config),
            alerts_out=Path(args.alerts_out) if args.alerts_out else None,
            scores_out=Path(args.scores_out) if args.scores_out else None,
            speed=None if args.fast else args.speed,
            plot=Path(args.plot) if args.plot else None,
            skip_bad=args.skip_bad,
            batch_rows=args.batch_rows,
            progress=not args.no_progress,
        )
    except (ReplayError, ConfigError) as err:
        print(f"gateway replay: {err}", file=sys.stderr)
        return 2
    parsed_bad = result.bad_rows
    opened = sum(1 for a in result.alerts if a.state is not AlertState.CLEARED)
    print(
        f"replayed {result.rows} rows: {len(result.alerts)} alerts ({opened} still open), "
        f"{parsed_bad} bad rows" + ("" if not parsed_bad or result.stopped_at_line else " skipped")
    )
    if result.stopped_at_line is not None:
        print(
            f"gateway replay: {args.readings}: line {result.stopped_at_line}: "
            f"{result.stopped_reason}; "
            "stopped there (use --skip-bad to skip and count bad rows)",
            file=sys.stderr,
        )
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gateway replay`."""
    p = sub.add_parser(
        "replay",
        help="run recorded readings through the detectors",
        description=__doc__,  # the whole contract: formats, outputs, bad rows
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--readings", metavar="FILE.csv", help="ts,stream,value[,quality]")
    what.add_argument(
        "--recording",
        metavar="DIR",
        help="a `gateway run --record` folder, through every stage (docs/recording.md)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="[[dma]] and [water]; with --recording, default the recording's config.toml",
    )
    p.add_argument("--alerts-out", metavar="FILE.jsonl", help="one JSON object per alert")
    p.add_argument("--scores-out", metavar="FILE.csv", help="ts,stream,value,score per row")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true", help="as fast as possible (the default)")
    pace.add_argument("--speed", type=float, metavar="N", help="N times real time")
    p.add_argument("--plot", metavar="FILE.png", help="inflow and pressures per DMA, with alerts")
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows")
    p.add_argument("--batch-rows", type=int, default=50_000, metavar="N", help="rows per batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_run)
