"""EtaStage as the gateway wires it: made from settings, fed FixBatch bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.batch import NS_PER_S, FixBatch
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.parts import Wiring
from gateway.streams import StreamRegistry
from gateway.transit.avl import read_avl
from gateway.transit.predictor import Method
from gateway.transit.stage import EtaSettings, EtaStage

DATA = Path(__file__).resolve().parents[1] / "data" / "avl"
GTFS = DATA / "capmetro_gtfs_2016-12-16.zip"


def test_bundles_of_fixes_give_predictions_with_uncertainty() -> None:
    registry = StreamRegistry()
    stage = EtaStage.create(Wiring(registry, "gw"), EtaSettings(gtfs=str(GTFS)))
    fixes = [f for f in read_avl(DATA / "capmetro_2016-12-16.csv") if f.vehicle == "2305"][:20]
    vid = registry.vehicles.intern("2305")
    stage.assign("2305", fixes[0].trip_id, fixes[0].route_id)
    n = len(fixes)
    batch = FixBatch(
        np.asarray([round(f.ts_s * NS_PER_S) for f in fixes], np.int64),
        np.full(n, vid, np.int32),
        np.asarray([f.lat for f in fixes]),
        np.asarray([f.lon for f in fixes]),
        np.full(n, np.nan, np.float32),
        np.full(n, np.nan, np.float32),
        np.full(n, 3, np.uint8),
    )
    bundle = Bundle(fixes=batch)
    assert stage.process(bundle) is bundle
    predictions, arrivals = stage.drain()
    assert predictions and arrivals
    assert all(p.method is Method.KALMAN and p.uncertainty_s > 0 for p in predictions)
    assert all(p.arrival_s >= p.made_at_s for p in predictions)
    assert stage.in_service("2305", fixes[-1].ts_s)
    assert stage.drain() == ([], [])


def test_bad_settings_are_config_errors(tmp_path: Path) -> None:
    wiring = Wiring(StreamRegistry(), "gw")
    with pytest.raises(ConfigError, match="gtfs"):
        EtaStage.create(wiring, EtaSettings())
    with pytest.raises(ConfigError, match="cannot open"):
        EtaStage.create(wiring, EtaSettings(gtfs=str(tmp_path / "none.zip")))
    with pytest.raises(ConfigError, match="methods"):
        EtaStage.create(wiring, EtaSettings(gtfs=str(GTFS), methods=("magic",)))
