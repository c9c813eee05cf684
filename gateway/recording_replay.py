"""`gateway replay --recording DIR`: a recording through the stages `build` wires.

    RecordingReader(DIR) --one bundle at a time, in emit order--> build_stages(settings)
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
import dataclasses
import json
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.analytics.vehicle import VehicleRules
from gateway.build import build_stages
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.events import Alert
from gateway.parts import Stage, Wiring
from gateway.recording_reader import RecordingReader, RecordingReadError
from gateway.replay import _progress, alert_json
from gateway.settings import Settings, load_settings

_PROGRESS_BUNDLES = 1000  # recordings shorter than this get no progress bar


@dataclasses.dataclass(slots=True)
class RecordingReplay:
    alerts: list[Alert]  # final state of every alert, by opened_at
    bundles: int
    rows: int
    truncated: bool  # the files end inside a bundle (a kill, a full disk): that one is left out


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


def _paced(
    bundles: Iterable[tuple[int, Bundle]], speed: float | None
) -> Iterator[tuple[int, Bundle]]:
    wall0 = time.monotonic()
    t0: int | None = None
    for emitted, bundle in bundles:
        if t0 is None:
            t0 = emitted
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
    reader = RecordingReader(directory)
    settings, file = recording_settings(directory, config)
    wiring = Wiring(reader.registry, settings.gateway.id)
    stages: list[Stage] = build_stages(settings, wiring, warm=True, file=file)
    clock = _DataClock()
    for stage in stages:
        if isinstance(stage, VehicleRules):
            stage.clock = clock
    latest: dict[str, Alert] = {}
    rows = bundles = 0
    # the manifest's counts as of its last rewrite: the bar's total, not a promise
    counts = reader.manifest.get("counts", {})
    total = sum(int(counts.get(k, 0)) for k in ("readings", "fixes", "events", "rejects"))
    bar = _progress(total, enabled=progress and counts.get("bundles", 0) >= _PROGRESS_BUNDLES)
    for emitted, bundle in _paced(reader, speed):
        clock.now = emitted
        out = bundle
        for stage in stages:
            out = stage.process(out)
        for a in out.alerts:
            latest[a.id] = a
        rows += len(bundle)
        bundles += 1
        bar(len(bundle))
    bar(0, done=True)
    alerts = sorted(latest.values(), key=lambda a: (a.opened_at, a.kind, a.asset, a.id))
    return RecordingReplay(alerts, bundles, rows, reader.truncated)


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
