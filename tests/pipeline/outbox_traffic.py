"""Traffic whose every value is a function of its name and time, for the restart tests.

    python -m tests.pipeline.outbox_traffic OUTBOX SEED

fills OUTBOX with `bundles()` under a registry that met the names in the order
of SEED, then kills itself with SIGKILL: what the outbox holds is all that is
left of the process. A test then drains the file from a process that met the
names in another order, and checks every stored row against `expected()`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
import zlib

import numpy as np

from gateway.batch import AggregateBatch, FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, Event, Severity
from gateway.pipeline.outbox import Outbox
from gateway.streams import StreamRegistry

DAY = 86_400 * 10**9
T0 = (int(os.environ.get("OUTBOX_TRAFFIC_NOW", time.time_ns())) // DAY - 1) * DAY
"""Yesterday 00:00 UTC, so that no retention prunes the rows; the test hands its own
`now` to the filling process, so both agree on T0 across a midnight."""
STEP = 10**9
STREAMS = [f"dma-{d:02d}/{p}/{q}" for d in range(1, 6) for p, q in
           (("inlet", "flow_lps"), ("pz-1", "pressure_m"), ("pz-2", "pressure_m"))]  # fmt: skip
VEHICLES = [f"MH12-PM-{n:04d}" for n in range(1, 21)]
BUNDLES = 6  # each a second of every stream and vehicle


def unit_of(name: str) -> tuple[str, str]:
    return ("L/s", "flow") if name.endswith("flow_lps") else ("m", "pressure")


def value_of(name: str, ts: int) -> float:
    return float(zlib.crc32(name.encode()) % 10_000) + (ts - T0) / STEP


def ordered(names: list[str], seed: int) -> list[str]:
    out = list(names)
    random.Random(seed).shuffle(out)
    return out


def registry_for(seed: int, extra: int = 0) -> StreamRegistry:
    """Names met in the order of `seed`, after `extra` names of no traffic."""
    reg = StreamRegistry()
    for i in range(extra):
        reg.register(f"other/s{i}/value", "u", "other")
        reg.vehicles.intern(f"OTHER-{i}")
    for name in ordered(STREAMS, seed):
        reg.register(name, *unit_of(name))
    for name in ordered(VEHICLES, seed):
        reg.vehicles.intern(name)
    return reg


def bundles(reg: StreamRegistry) -> list[Bundle]:
    out = []
    sids = np.array([reg.id_of(n) for n in STREAMS], np.int32)
    vids = np.array([reg.vehicles.id_of(n) for n in VEHICLES], np.int32)
    for k in range(BUNDLES):
        ts = T0 + k * STEP
        values = np.array([value_of(n, ts) for n in STREAMS])
        readings = ReadingBatch.of(np.full(len(sids), ts), sids, values)
        lat = np.array([18.0 + value_of(n, ts) / 1e5 for n in VEHICLES])
        fixes = FixBatch(
            np.full(len(vids), ts, np.int64), vids, lat, lat + 55.0,
            np.full(len(vids), 5.0, np.float32), np.full(len(vids), 90.0, np.float32),
            np.full(len(vids), 3, np.uint8),
        )  # fmt: skip
        aggregates = AggregateBatch(
            np.full(len(sids), ts, np.int64), sids, np.ones(len(sids), np.int32),
            values, values, values, values, values,
        )  # fmt: skip
        events = tuple(Event(ts, n.rpartition("/")[0], "tamper", n) for n in STREAMS[k::BUNDLES])
        alerts = tuple(
            Alert("leak", n.split("/")[0], Severity.WARNING, ts, magnitude=value_of(n, ts))
            for n in STREAMS[k::BUNDLES]
        )
        out.append(Bundle(readings, fixes, aggregates, events, alerts))
    return out


def expected() -> dict[str, set[tuple[object, ...]]]:
    """Every row the traffic holds, by name, as the sinks store it."""
    ts_all = [T0 + k * STEP for k in range(BUNDLES)]
    return {
        "readings": {(n, t, value_of(n, t)) for n in STREAMS for t in ts_all},
        "aggregates": {(n, t, value_of(n, t)) for n in STREAMS for t in ts_all},
        "fixes": {(v, t, round(18.0 + value_of(v, t) / 1e5, 9)) for v in VEHICLES for t in ts_all},
        "events": {
            (n.rpartition("/")[0], t, n) for k, t in enumerate(ts_all) for n in STREAMS[k::BUNDLES]
        },
        "alerts": {
            (n.split("/")[0], t, value_of(n, t))
            for k, t in enumerate(ts_all)
            for n in STREAMS[k::BUNDLES]
        },
    }


async def fill(path: str, seed: int) -> None:
    reg = registry_for(seed)
    box = Outbox.open(path, reg)
    for bundle in bundles(reg):
        await box.put(bundle)  # committed and fsync'd once this returns


if __name__ == "__main__":
    asyncio.run(fill(sys.argv[1], int(sys.argv[2])))
    os.kill(os.getpid(), signal.SIGKILL)
