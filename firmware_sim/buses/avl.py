"""Replay real AVL (CapMetro, Austin, 2016-12-16) as `pvt` messages.

The package ships a day of five buses (data/avl/); the full day of 279 buses is
`capmetro_2016-12-16.csv` in the CapMetrics data (see data/README.md).

Each row becomes one `pvt` JSON message from vehicle `CM-<vehicle_id>`, in time
order. Timestamps are shifted so that the replay's last fix is stamped at the
real time the replay ends: at N x speed every message is then in the past, never
ahead of the gateway's clock, and within its history window.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
from pathlib import Path

from firmware_sim.buses.fleet import Message, unit_topic
from firmware_sim.buses.routes import DATA, need

DEFAULT_AVL = DATA / "avl" / "capmetro_2016-12-16_sample.csv"


@dataclasses.dataclass(frozen=True, slots=True)
class AvlFix:
    t_ms: int  # original time, ms since the epoch
    vehicle: str
    lat: float
    lon: float
    speed_kmh: float


def load_avl(path: Path | str = DEFAULT_AVL, limit: int = 0) -> list[AvlFix]:
    """The fixes in time order (the first `limit` rows of the file when limit > 0)."""
    fixes = []
    with need(path).open(newline="") as fh:
        for n, row in enumerate(csv.DictReader(fh)):
            if limit and n >= limit:
                break
            stamp = dt.datetime.fromisoformat(row["timestamp"])
            fixes.append(
                AvlFix(
                    int(stamp.timestamp() * 1000),
                    f"CM-{row['vehicle_id']}",
                    float(row["latitude"]),
                    float(row["longitude"]),
                    max(0.0, float(row["speed"] or 0.0) * 3.6),
                )
            )
    fixes.sort(key=lambda f: f.t_ms)
    return fixes


class AvlReplay:
    """Turns fixes into messages; `due(real_ms)` returns those whose time has come."""

    def __init__(
        self,
        fixes: list[AvlFix],
        start_real_ms: int,
        speed: float,
        prefix: str = "pmpml",
        qos: int = 1,
    ) -> None:
        if not fixes:
            raise ValueError("no AVL fixes to replay")
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.fixes = fixes
        self.speed = speed
        self.prefix = prefix
        self.qos = qos
        self.first = fixes[0].t_ms
        span = fixes[-1].t_ms - self.first
        self.start_real_ms = start_real_ms
        self.end_real_ms = start_real_ms + round(span / speed)
        self.shift = self.end_real_ms - fixes[-1].t_ms
        self.next = 0
        self.seq: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return self.next >= len(self.fixes)

    def due(self, real_ms: int) -> list[Message]:
        horizon = self.first + (real_ms - self.start_real_ms) * self.speed
        out = []
        while self.next < len(self.fixes) and self.fixes[self.next].t_ms <= horizon:
            out.append(self.message(self.fixes[self.next]))
            self.next += 1
        return out

    def message(self, fix: AvlFix) -> Message:
        seq = self.seq.get(fix.vehicle, -1) + 1
        self.seq[fix.vehicle] = seq
        body = {
            "v": 1,
            "vehicle": fix.vehicle,
            "ts": fix.t_ms + self.shift,
            "seq": seq,
            "lat": fix.lat,
            "lon": fix.lon,
            "speed_kmh": round(fix.speed_kmh, 2),
        }
        topic = unit_topic(self.prefix, fix.vehicle, "pvt")
        return Message(topic, json.dumps(body).encode(), self.qos)
