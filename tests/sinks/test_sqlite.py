import sqlite3
from pathlib import Path

import numpy as np

from gateway.batch import Quality, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, Event, Severity
from gateway.sinks.sqlite import SqliteSink
from gateway.streams import StreamRegistry


async def test_writes_are_idempotent_and_keep_nan_as_null(tmp_path: Path) -> None:
    reg = StreamRegistry()
    flow = reg.register("dma-01/inlet/flow_lps", "L/s", "flow")
    sink = SqliteSink(tmp_path / "store.sqlite", reg)
    await sink.open()
    readings = ReadingBatch.of(
        [1, 2, 3], [flow] * 3, [1.0, np.nan, 3.0], [0, Quality.COMM_ERROR | Quality.TIMEOUT, 0]
    )
    alert = Alert("leak", "dma-01", Severity.WARNING, opened_at=2)
    bundle = Bundle(
        readings=readings, alerts=(alert,), events=(Event(ts=2, asset="dma-01", kind="tamper"),)
    )
    await sink.write(bundle)
    await sink.write(bundle)  # a retried bundle adds nothing
    await sink.write(Bundle(alerts=(alert.clear(9),)))
    assert sink.rows("readings") == 3
    assert sink.rows("events") == 1
    assert sink.rows("readings", since_ns=2) == 2
    await sink.close()

    db = sqlite3.connect(tmp_path / "store.sqlite")
    rows = db.execute("SELECT ts, value, quality FROM readings ORDER BY ts").fetchall()
    assert rows == [(1, 1.0, 0), (2, None, 3), (3, 3.0, 0)]
    assert db.execute("SELECT state FROM alerts").fetchone() == ("cleared",)
    assert db.execute("SELECT name, unit FROM streams").fetchall() == [
        ("dma-01/inlet/flow_lps", "L/s")
    ]
