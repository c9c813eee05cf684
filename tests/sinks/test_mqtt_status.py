"""The retained per-vehicle status built from bundles."""

from __future__ import annotations

import json

import numpy as np

from gateway.batch import FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, Severity
from gateway.sinks.mqtt_status import StatusBoard
from gateway.streams import StreamRegistry

MS = 1_000_000


def fixes(registry: StreamRegistry, rows: list[tuple[str, int, float]]) -> FixBatch:
    return FixBatch(
        np.array([t * MS for _, t, _ in rows], np.int64),
        np.array([registry.vehicles.intern(v) for v, _, _ in rows], np.int32),
        np.array([lat for *_, lat in rows]),
        np.full(len(rows), 73.8),
        np.full(len(rows), 10.0, np.float32),
        np.full(len(rows), np.nan, np.float32),
        np.full(len(rows), 3, np.uint8),
    )


def test_status_has_latest_fix_health_and_open_alerts() -> None:
    registry = StreamRegistry()
    board = StatusBoard(registry)
    coolant = registry.register("bus/B1/coolant_c", "degC")
    water = registry.register("dma-01/inlet/flow_lps", "L/s")
    overheat = Alert("engine_overheat", "bus/B1", Severity.CRITICAL, opened_at=2_000 * MS)
    board.process(
        Bundle(
            fixes=fixes(registry, [("B1", 2_000, 18.6), ("B1", 1_000, 18.5), ("B2", 1_500, 18.7)]),
            readings=ReadingBatch.of([1_000 * MS, 1_000 * MS], [coolant, water], [107.0, 3.0]),
            alerts=(overheat,),
        )
    )
    out = dict(board.messages())
    assert set(out) == {"pmpml/v1/vehicles/B1/status", "pmpml/v1/vehicles/B2/status"}
    b1 = json.loads(out["pmpml/v1/vehicles/B1/status"])
    assert b1["last_fix"]["lat"] == 18.6 and b1["last_fix"]["speed_kmh"] == 36.0
    assert b1["last_fix"]["heading"] is None
    assert b1["health"] == {"coolant_c": 107.0}
    assert [a["kind"] for a in b1["open_alerts"]] == ["engine_overheat"]
    assert board.messages() == []  # nothing changed since
    # an older (history) fix does not replace the latest; a cleared alert leaves the list
    board.process(
        Bundle(fixes=fixes(registry, [("B1", 500, 10.0)]), alerts=(overheat.clear(3_000 * MS),))
    )
    b1 = json.loads(dict(board.messages())["pmpml/v1/vehicles/B1/status"])
    assert b1["last_fix"]["lat"] == 18.6 and b1["open_alerts"] == [] and b1["ts"] == 3_000


def test_health_keeps_each_signal_s_latest_value_by_time() -> None:
    registry = StreamRegistry()
    board = StatusBoard(registry, prefix="t")
    coolant = registry.register("bus/B1/coolant_c", "degC", "temperature")
    rpm = registry.register("bus/B1/rpm", "rpm", "speed")
    water = registry.register("dma-01/inlet/flow_lps", "L/s", "flow")
    board.process(
        Bundle(
            readings=ReadingBatch.of(
                [3 * MS, 1 * MS, 2 * MS, 4 * MS, 5 * MS],
                [coolant, coolant, rpm, rpm, water],
                [90.0, 80.0, 700.0, np.nan, 12.0],
            )
        )
    )
    status = json.loads(board.messages()[0][1])
    assert status["health"] == {"coolant_c": 90.0, "rpm": 700.0}, "latest by ts, NaN skipped"
    assert status["ts"] == 3
    assert [topic for topic, _ in board.messages(changed_only=False)] == ["t/v1/vehicles/B1/status"]
