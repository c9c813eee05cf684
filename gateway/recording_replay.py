"""`gateway replay --recording DIR`: a recording through the stages `build` wires.

    DIR/bundles.csv --one row per bundle, in emit order--+
    DIR/readings.csv fixes.csv events.jsonl rejects.jsonl +--> Bundle --> build_stages(settings)
                                                                        aggregate, water, vehicle
                                                                              | alerts
                                                                              v
                                                                  final states, --alerts-out

The bundles are rebuilt as the sources emitted them (the same rows, the same `live`
flag, in the same order), so the stages, which judge on data time, give the live
run's alerts. The one clock a stage reads (the vehicle rules' stale and offline)
is set to each bundle's recorded `emitted_at`. The settings are the recording's
own copy of the config (DIR/config.toml) unless `--config` names another, e.g. to
try new thresholds on the field's traffic.
"""

from __future__ import annotations

import argparse
import base64
import csv
import dataclasses
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.analytics.vehicle import VehicleRules
from gateway.batch import FixBatch, ReadingBatch
from gateway.build import build_stages
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.events import Alert, Event, Reject
from gateway.parts import Stage, Wiring
from gateway.recording_files import FORMAT, HEADERS, VERSION
from gateway.replay import _progress, alert_json
from gateway.settings import Settings, load_settings
from gateway.streams import StreamRegistry

_PROGRESS_BUNDLES = 1000  # recordings shorter than this get no progress bar


class RecordingReadError(ValueError):
    """The folder is not a recording this version can read, or a file in it is damaged."""


@dataclasses.dataclass(frozen=True, slots=True)
class Recording:
    """A recording read into memory: its manifest and its bundles in emit order."""

    manifest: dict[str, Any]
    emitted_at: NDArray[np.int64]  # per bundle, ns UTC
    bundles: list[Bundle]
    registry: StreamRegistry  # the names the bundles' ids refer to
    truncated: bool  # the files end inside a bundle (a kill, a full disk): that one is left out


@dataclasses.dataclass(slots=True)
class RecordingReplay:
    alerts: list[Alert]  # final state of every alert, by opened_at
    bundles: int
    rows: int
    truncated: bool


def parse_iso(text: list[str], where: str) -> NDArray[np.int64]:
    """The recorder's times (ISO 8601, ns, offset Z) back to ns UTC."""
    if any(not t.endswith("Z") for t in text):
        bad = next(i for i, t in enumerate(text) if not t.endswith("Z"))
        raise RecordingReadError(f"{where}: row {bad + 1}: time {text[bad]!r} is not UTC (…Z)")
    try:
        return np.asarray([t[:-1] for t in text], "datetime64[ns]").astype(np.int64)
    except ValueError as err:
        raise RecordingReadError(f"{where}: a time is not ISO 8601: {err}") from err


def _csv(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        text = fh.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the last line was cut short (a kill, a full disk)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    want = list(HEADERS[path.name])
    if not rows or rows[0] != want:
        raise RecordingReadError(f"{path}: line 1: header must be {','.join(want)}")
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(want):
            raise RecordingReadError(f"{path}: line {n}: {len(row)} fields, not {len(want)}")
    return rows[1:]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                if not line.endswith("\n"):
                    break  # the last line was cut short
                raise RecordingReadError(f"{path}: line {n}: {err}") from err
    return out


def _columns(rows: list[list[str]], width: int) -> list[list[str]]:
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def read_recording(directory: Path) -> Recording:
    """Read `directory` (see docs/recording.md) into bundles; raise RecordingReadError."""
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise RecordingReadError(
            f"{directory} is not a recording (no manifest.json); make one with "
            "gateway run -c FILE --record DIR"
        ) from err
    except json.JSONDecodeError as err:
        raise RecordingReadError(f"{path}: not JSON: {err}") from err
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise RecordingReadError(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
            f"this gateway reads {FORMAT!r} version {VERSION}"
        )
    registry = StreamRegistry()
    for s in manifest.get("streams", []):
        registry.register(s["name"], s.get("unit", ""), s.get("kind", ""))
    heads = _columns(_csv(directory / "bundles.csv"), 8)
    _, emitted_t, _, live_t, nr_t, nf_t, ne_t, nj_t = heads
    emitted = parse_iso(emitted_t, "bundles.csv")
    counts = [np.asarray(c, np.int64) for c in (nr_t, nf_t, ne_t, nj_t)]
    readings = _readings(directory / "readings.csv", registry)
    fixes = _fixes(directory / "fixes.csv", registry)
    events = [_event(e) for e in _jsonl(directory / "events.jsonl")]
    rejects = [_reject(j) for j in _jsonl(directory / "rejects.jsonl")]
    have = (len(readings), len(fixes), len(events), len(rejects))
    ends = [np.cumsum(c) for c in counts]
    complete = np.ones(len(emitted), bool)
    for end, n in zip(ends, have, strict=True):
        complete &= end <= n
    keep = int(np.argmin(complete)) if not complete.all() else len(emitted)
    bundles = []
    at = [0, 0, 0, 0]
    for i in range(keep):
        nr, nf, ne, nj = (int(c[i]) for c in counts)
        r0, f0, e0, j0 = at
        bundles.append(
            Bundle(
                readings=readings[r0 : r0 + nr],
                fixes=fixes[f0 : f0 + nf],
                events=tuple(events[e0 : e0 + ne]),
                rejects=tuple(rejects[j0 : j0 + nj]),
                live=live_t[i] == "1",
            )
        )
        at = [r0 + nr, f0 + nf, e0 + ne, j0 + nj]
    return Recording(manifest, emitted[:keep], bundles, registry, keep < len(emitted))


def _readings(path: Path, registry: StreamRegistry) -> ReadingBatch:
    ts_t, stream_t, value_t, quality_t = _columns(_csv(path), 4)
    names, index = np.unique(np.asarray(stream_t, object), return_inverse=True)
    ids = np.asarray([registry.register(str(n)) for n in names], np.int32)
    try:
        return ReadingBatch(
            parse_iso(ts_t, path.name),
            ids[index] if len(index) else np.zeros(0, np.int32),
            np.asarray(value_t, np.float64),
            np.asarray(quality_t, np.int64).astype(np.uint8),
        )
    except ValueError as err:
        raise RecordingReadError(f"{path}: {err}") from err


def _fixes(path: Path, registry: StreamRegistry) -> FixBatch:
    ts_t, veh_t, lat_t, lon_t, speed_t, heading_t, fix_t = _columns(_csv(path), 7)
    vehicles = registry.vehicles
    try:
        return FixBatch(
            parse_iso(ts_t, path.name),
            np.asarray([vehicles.intern(v) for v in veh_t], np.int32),
            np.asarray(lat_t, np.float64),
            np.asarray(lon_t, np.float64),
            np.asarray(speed_t, np.float64).astype(np.float32),
            np.asarray(heading_t, np.float64).astype(np.float32),
            np.asarray(fix_t, np.int64).astype(np.uint8),
        )
    except ValueError as err:
        raise RecordingReadError(f"{path}: {err}") from err


def _event(e: dict[str, Any]) -> Event:
    ts = int(parse_iso([e["ts"]], "events.jsonl")[0])
    return Event(ts, e["asset"], e["kind"], e.get("message", ""), e.get("data") or {})


def _reject(j: dict[str, Any]) -> Reject:
    ts = int(parse_iso([j["ts"]], "rejects.jsonl")[0])
    payload = base64.b64decode(j.get("payload_b64", ""))
    return Reject(ts, j["source"], j["reason"], j.get("detail", ""), payload)


def recording_settings(directory: Path, config: Path | None) -> tuple[Settings, str]:
    """The settings to replay with: `config`, else the recording's own copy."""
    path = config if config is not None else directory / "config.toml"
    if not path.is_file():
        raise RecordingReadError(
            f"{directory} holds no config.toml (the run was not started from a file); "
            "give the gateway's config with --config FILE"
        )
    return load_settings(path), str(path)


class _DataClock:
    """The vehicle rules' clock in a replay: the recorded emit time of the bundle at hand."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _paced(rec: Recording, speed: float | None) -> Iterator[tuple[int, Bundle]]:
    wall0 = time.monotonic()
    t0 = int(rec.emitted_at[0]) if len(rec.emitted_at) else 0
    for emitted, bundle in zip(rec.emitted_at.tolist(), rec.bundles, strict=True):
        if speed:
            time.sleep(max(0.0, wall0 + (emitted - t0) / 1e9 / speed - time.monotonic()))
        yield emitted, bundle


def replay_recording(
    directory: Path,
    *,
    config: Path | None = None,
    speed: float | None = None,
    progress: bool = True,
) -> RecordingReplay:
    """Run the recording through the stages `build` wires; the alerts in their final state."""
    rec = read_recording(directory)
    settings, file = recording_settings(directory, config)
    wiring = Wiring(rec.registry, settings.gateway.id)
    stages: list[Stage] = build_stages(settings, wiring, warm=True, file=file)
    clock = _DataClock()
    for stage in stages:
        if isinstance(stage, VehicleRules):
            stage.clock = clock
    latest: dict[str, Alert] = {}
    rows = 0
    total = sum(len(b) for b in rec.bundles)
    bar = _progress(total, enabled=progress and len(rec.bundles) >= _PROGRESS_BUNDLES)
    for emitted, bundle in _paced(rec, speed):
        clock.now = emitted
        out = bundle
        for stage in stages:
            out = stage.process(out)
        for a in out.alerts:
            latest[a.id] = a
        rows += len(bundle)
        bar(len(bundle))
    bar(0, done=True)
    alerts = sorted(latest.values(), key=lambda a: (a.opened_at, a.kind, a.asset, a.id))
    return RecordingReplay(alerts, len(rec.bundles), rows, rec.truncated)


def run_cli(args: argparse.Namespace) -> int:
    """`gateway replay --recording DIR` (its flags are in gateway.replay's parser)."""
    unused = [f for f in ("scores_out", "plot") if getattr(args, f)]
    if unused or args.skip_bad:
        flags = ", ".join(
            "--" + f.replace("_", "-") for f in [*unused, *(["skip_bad"] * args.skip_bad)]
        )
        print(f"gateway replay: {flags} go with --readings, not --recording", file=sys.stderr)
        return 2
    try:
        result = replay_recording(
            Path(args.recording),
            config=Path(args.config) if args.config else None,
            speed=None if args.fast else args.speed,
            progress=not args.no_progress,
        )
    except (RecordingReadError, ConfigError) as err:
        print(f"gateway replay: {err}", file=sys.stderr)
        return 2
    if args.alerts_out:
        with open(args.alerts_out, "w", encoding="utf-8") as fh:
            for a in result.alerts:
                fh.write(json.dumps(alert_json(a), sort_keys=True) + "\n")
    still_open = sum(1 for a in result.alerts if a.is_open)
    print(
        f"replayed {result.bundles} bundles ({result.rows} rows): "
        f"{len(result.alerts)} alerts ({still_open} still open)"
    )
    if result.truncated:
        print(
            f"gateway replay: {args.recording} ends inside a bundle (the recording was cut "
            "short); replayed the complete ones",
            file=sys.stderr,
        )
    return 0
