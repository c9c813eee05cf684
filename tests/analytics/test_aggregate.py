"""The one-minute aggregation stage, and that every gateway runs it."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.analytics.aggregate import AggregateStage
from gateway.build import build
from gateway.bundle import Bundle
from gateway.settings import settings_from
from gateway.streams import StreamRegistry
from tests.analytics.test_water import FLOW, dma_series, readings


def test_closed_minutes_of_every_stream_become_aggregates() -> None:
    reg = StreamRegistry()
    ts, s = dma_series(0.1, step_s=10)
    batch = readings(reg, ts, s)
    out = AggregateStage(reg).process(Bundle(readings=batch))
    assert out.readings is batch or len(out.readings) == len(batch)
    agg = out.aggregates
    sel = agg.stream == reg.id_of(FLOW)
    assert np.all(agg.count[sel] == 6)  # 10 s samples: 6 per closed minute
    first = s[FLOW][:6]
    assert agg.mean[sel][0] == pytest.approx(first.mean())
    assert agg.min[sel][0] == first.min() and agg.max[sel][0] == first.max()
    assert agg.last[sel][0] == first[-1]


def test_a_gateway_with_buses_only_still_aggregates() -> None:
    settings = settings_from({"sources": {"buses": {"type": "mqtt"}}})
    stages = build(settings, check=True).stages
    assert [type(s).__name__ for s in stages] == ["AggregateStage", "VehicleRules"]
