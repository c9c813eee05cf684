"""`gateway eta replay`: the arrival prediction stage over an AVL CSV. A contract.

    gateway eta replay --gtfs GTFS.zip --avl AVL.csv [--history AVL.csv ...]
                       --out predictions.csv [--method kalman|deviation|schedule]

- AVL CSV (`gateway.transit.avl`): vehicle_id,timestamp,speed,route_id,trip_id,
  latitude,longitude,trip_headsign; ISO 8601 times with offset, speed in m/s.
- History files are only learned from (segment travel times by time of day).
- predictions.csv: made_at,vehicle_id,trip_id,stop_sequence,stop_id,predicted_arrival,
  times ISO 8601 with the feed's offset. One row per prediction made at a fix, for
  each stop of the vehicle's current trip not yet reached, up to 30 minutes ahead.
  A prediction made at t uses only fixes up to t: the fixes are fed to `EtaStage`
  one at a time, in time order, exactly as the gateway feeds it.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import numpy as np

from gateway.batch import NS_PER_S, FixBatch
from gateway.bundle import Bundle
from gateway.streams import Interner
from gateway.transit.avl import AvlFix, read_avl
from gateway.transit.feed import load_feed
from gateway.transit.matcher import Arrival
from gateway.transit.predictor import Method, Prediction, PredictorSettings
from gateway.transit.stage import EtaSettings, EtaStage

HEADER = ("made_at", "vehicle_id", "trip_id", "stop_sequence", "stop_id", "predicted_arrival")


def iso(ts_s: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(round(ts_s), tz).isoformat()


def _fix_batch(vehicles: Interner, f: AvlFix) -> FixBatch:
    nan = np.asarray([np.nan], np.float32)
    return FixBatch(
        np.asarray([round(f.ts_s * NS_PER_S)], np.int64),
        np.asarray([vehicles.intern(f.vehicle)], np.int32),
        np.asarray([f.lat]),
        np.asarray([f.lon]),
        nan,
        nan,
        np.asarray([3], np.uint8),
    )


def replay(
    stage: EtaStage,
    fixes: Iterable[AvlFix],
    on_fix: Callable[[AvlFix, list[Prediction], list[Arrival]], None],
) -> None:
    """Feed the fixes to the stage one at a time, handing each fix's output on."""
    for f in fixes:
        stage.assign(f.vehicle, f.trip_id, f.route_id)
        stage.process(Bundle(fixes=_fix_batch(stage.vehicles, f)))
        on_fix(f, *stage.drain())


def make_stage(
    gtfs: Path,
    history: Sequence[Path],
    methods: Sequence[Method] = (Method.KALMAN,),
    predictor: PredictorSettings | None = None,
) -> EtaStage:
    settings = EtaSettings(
        gtfs=str(gtfs),
        methods=tuple(m.value for m in methods),
        predictor=predictor or PredictorSettings(),
    )
    stage = EtaStage(load_feed(gtfs), settings, Interner())
    for path in history:
        stage.learn_history(
            (f.vehicle, f.ts_s, f.lat, f.lon, f.trip_id, f.route_id) for f in read_avl(path)
        )
    return stage


def write_rows(
    out: TextIO, tz: ZoneInfo
) -> Callable[[AvlFix, list[Prediction], list[Arrival]], None]:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)

    def write(_fix: AvlFix, predictions: list[Prediction], _arrivals: list[Arrival]) -> None:
        for p in predictions:
            writer.writerow(
                (
                    iso(p.made_at_s, tz),
                    p.vehicle,
                    p.trip_id,
                    p.stop_sequence,
                    p.stop_id,
                    iso(p.arrival_s, tz),
                )
            )

    return write


def run(gtfs: Path, avl: Path, history: Sequence[Path], out: Path, method: Method) -> int:
    """The whole replay; returns the number of predictions written."""
    stage = make_stage(gtfs, history, (method,))
    fixes = read_avl(avl)
    count = 0
    with open(out, "w", newline="", encoding="utf-8") as f:
        write = write_rows(f, stage.feed.timezone)

        def counted(fix: AvlFix, predictions: list[Prediction], arrivals: list[Arrival]) -> None:
            nonlocal count
            count += len(predictions)
            write(fix, predictions, arrivals)

        replay(stage, fixes, counted)
    return count
