"""Recording: what `--record` costs ingest, and how fast its writer formats, against baselines.

- hot path: `MqttSource.handle` over simulated fleet messages (pvt, CAN, health as
  JSON), taking a bundle every 2,000 messages as the source does, without a recorder
  (the baseline) and with one (raw tap per message, bundle tap per flush, its writer
  thread writing to a temporary folder meanwhile), in interleaved rounds. Reported:
  the main thread's CPU and the wall time, the best round of each, as baseline /
  recorded (1.0: free).
- writer: readings written by the recorder's thread against pandas `to_csv` of the
  same columns (ts as ISO 8601, full-precision floats) in the same run, rows/s and
  the ratio.
- reader: the same file read back into bundles by the replay's reader, against
  pandas `read_csv` with the ts parsed.

Usage:
    python -m bench.recording                     # 40,000 messages, 7 rounds
    python -m bench.recording --messages 20000 --rounds 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from firmware_sim.buses.fleet import Fleet, FleetSettings, Message
from firmware_sim.buses.routes import PmpmlRoutes
from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.recording import Recorder
from gateway.recording_reader import RecordingReader
from gateway.settings import Settings
from gateway.streams import StreamRegistry

FLUSH = 2000


def messages(n: int) -> list[Message]:
    start_ms = (int(time.time()) - 3 * 3600) * 1000
    fleet = Fleet(FleetSettings(buses=2000, seed=1, start_ms=start_ms), PmpmlRoutes())
    out: list[Message] = []
    while len(out) < n:
        out.extend(fleet.advance(1.0))
    return out[:n]


def ingest(msgs: list[Message], folder: Path | None) -> tuple[float, float, int]:
    """(main-thread CPU s, wall s, rows) decoding `msgs`, recording into `folder` if given."""
    registry = StreamRegistry()
    recorder = Recorder(folder, registry, Settings()) if folder is not None else None
    tap = recorder.raw_tap("mqtt") if recorder is not None else None
    source = MqttSource(MqttSourceSettings(), registry, on_raw=tap)
    if recorder is not None:
        recorder.attach()
    rows = 0
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    for i, m in enumerate(msgs, 1):
        source.handle(m.topic, m.payload)
        if i % FLUSH == 0 or i == len(msgs):
            for b in source.take():
                rows += len(b)
                if recorder is not None:
                    recorder.tap("mqtt", b)
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    if recorder is not None:
        writer = recorder.detach()
        if writer is not None:
            writer.join()
        assert not recorder.stopped and recorder.stats.dropped == 0, recorder.stopped
    return cpu, wall, rows


def reader_rates(folder: Path) -> tuple[float, float]:
    """rows/s of the replay's reader and of pandas read_csv (ts parsed), on readings.csv."""
    import pandas as pd  # noqa: PLC0415 - the baseline only

    t0 = time.perf_counter()
    rows = sum(len(b.readings) for _, b in RecordingReader(folder))
    ours = rows / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    frame = pd.read_csv(folder / "readings.csv")
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    return ours, len(frame) / (time.perf_counter() - t0)


def writer_rates(n: int, folder: Path) -> tuple[float, float]:
    """rows/s of the recorder's writer and of pandas to_csv, for `n` readings."""
    import pandas as pd  # noqa: PLC0415 - the baseline only

    folder.mkdir(parents=True)
    registry = StreamRegistry()
    ids = np.asarray([registry.register(f"dma-{i % 50:02d}/inlet/flow_lps") for i in range(50)])
    ts = 1_767_225_600_000_000_000 + np.arange(n, dtype=np.int64) * 20_000_000
    rng = np.random.default_rng(1)
    batch = ReadingBatch.of(ts, ids[np.arange(n) % 50], rng.random(n) * 40)
    recorder = Recorder(folder / "rec", registry, Settings(), flush_s=3600)
    recorder.attach()
    recorder.tap("bench", Bundle(readings=batch))
    t0 = time.perf_counter()
    writer = recorder.detach()
    assert writer is not None
    writer.join()
    ours = n / (time.perf_counter() - t0)
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(ts, utc=True),
            "stream": registry.names_of(batch.stream),
            "value": batch.value,
            "quality": batch.quality,
        }
    )
    t0 = time.perf_counter()
    frame.to_csv(folder / "pandas.csv", index=False, float_format="%r")
    return ours, n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=200_000, help="readings for the writer test")
    args = parser.parse_args()
    msgs = messages(args.messages)
    base_cpu, base_wall, rec_cpu, rec_wall, ours, theirs = [], [], [], [], [], []
    read_ours: list[float] = []
    read_theirs: list[float] = []
    ingest(msgs, None)  # warm up: imports, caches, the first allocations
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):  # interleaved, so a noisy neighbour hits both alike
            cpu, wall, rows = ingest(msgs, None)
            base_cpu.append(cpu)
            base_wall.append(wall)
            cpu, wall, recorded_rows = ingest(msgs, Path(tmp) / f"hot-{r}")
            assert rows == recorded_rows
            rec_cpu.append(cpu)
            rec_wall.append(wall)
            a, b = writer_rates(args.rows, Path(tmp) / f"writer-{r}")
            ours.append(a)
            theirs.append(b)
            a, b = reader_rates(Path(tmp) / f"writer-{r}" / "rec")
            read_ours.append(a)
            read_theirs.append(b)
    # the fastest of each: the machine is shared, and noise only ever adds time
    print(f"hot path, {args.messages} messages ({rows} rows), best of {args.rounds}:")
    print(f"  main-thread CPU  {min(base_cpu):.3f} s vs {min(rec_cpu):.3f} s recorded,", end="")
    print(f" baseline/recorded = {min(base_cpu) / min(rec_cpu):.2f}")
    print(f"  wall time        {min(base_wall):.3f} s vs {min(rec_wall):.3f} s recorded,", end="")
    print(f" baseline/recorded = {min(base_wall) / min(rec_wall):.2f}")
    print(f"writer, {args.rows} readings: recorder {max(ours):,.0f} rows/s,")
    print(f"  pandas to_csv {max(theirs):,.0f} rows/s, ratio {max(ours) / max(theirs):.2f}")
    print(f"reader (replay), same file: {max(read_ours):,.0f} rows/s,")
    print(f"  pandas read_csv {max(read_theirs):,.0f} rows/s,", end="")
    print(f" ratio {max(read_ours) / max(read_theirs):.2f}")


if __name__ == "__main__":
    main()
