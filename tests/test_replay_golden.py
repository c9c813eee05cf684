"""`gateway replay --alerts-out` against a golden file: the alerts JSONL contract.

tests/data/golden/replay-15min/ holds a replay CSV of one DMA logged every 15
minutes (ISO times at +05:30), its config, and the alerts JSONL it must give.
After a deliberate change to the detectors or the format, regenerate with
`GATEWAY_UPDATE_GOLDEN=1 pytest tests/test_replay_golden.py`, read the diff, and
note a format change in CHANGELOG.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np

from gateway.replay import replay
from tests.analytics.test_water import P_1, P_IN, T0, dma_series
from tests.analytics.test_water_cadence import resampled

GOLDEN = Path(__file__).parent / "data" / "golden" / "replay-15min"
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
KEYS = {
    "asset", "cleared_at", "detected_at", "evidence", "id", "kind", "magnitude", "message",
    "needs_ack", "opened_at", "score", "severity", "started_at", "state", "unit", "updated_at",
}  # fmt: skip


def write_readings(path: Path) -> None:
    """Nine days of inflow and one pressure at 15 minutes: a burst on day 8, three
    silent hours on day 6."""
    days = 9
    ts = T0 + np.arange(0, days * 86_400, 60)
    at = T0 + int(8.45 * 86_400) // 900 * 900
    ts, s = dma_series(days, seed=7, extra=np.where(ts >= at, 4.0, 0.0))
    s[P_1] = np.where(ts >= at, s[P_1] - 5.0, s[P_1])
    del s[P_IN]  # two streams keep the file small
    lines = ["ts,stream,value"]
    silent = (T0 + 6 * 86_400, T0 + 6 * 86_400 + 3 * 3600)
    series = resampled(ts, s, dict.fromkeys(s, 900))
    rows = []
    for name, (t, v) in series.items():
        for when, value in zip(t.tolist(), v.tolist(), strict=True):
            if not silent[0] <= when < silent[1]:
                rows.append((when, name, value))
    rows.sort(key=lambda r: r[0])
    for when, name, value in rows:
        stamp = dt.datetime.fromtimestamp(when, IST).isoformat()
        lines.append(f"{stamp},{name},{value:.3f}")
    path.write_text("\n".join(lines) + "\n")


def test_alerts_jsonl_matches_the_golden_file(tmp_path: Path) -> None:
    readings, expected = GOLDEN / "readings.csv", GOLDEN / "alerts.jsonl"
    if os.environ.get("GATEWAY_UPDATE_GOLDEN"):
        write_readings(readings)
        replay(readings, GOLDEN / "config.toml", alerts_out=expected, progress=False)
    out = tmp_path / "alerts.jsonl"
    replay(readings, GOLDEN / "config.toml", alerts_out=out, progress=False)
    assert out.read_text() == expected.read_text()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {a["kind"] for a in lines} == {"burst", "leak", "sensor_fault"}  # a held burst: a leak
    for a in lines:
        assert set(a) == KEYS
        when = dt.datetime.fromisoformat(a["detected_at"])
        assert when.utcoffset() == dt.timedelta(hours=5, minutes=30)
        assert a["detected_at"] == a["opened_at"]
    burst = next(a for a in lines if a["kind"] == "burst")
    assert burst["asset"] == "dma-01" and burst["unit"] == "L/s" and burst["magnitude"] > 2
    assert burst["started_at"] <= burst["detected_at"]
