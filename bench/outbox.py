"""Outbox write throughput with fsync on, and its cost per batch, against an fsync'd segment log.

Each contender stores the same encoded bundles (gateway.pipeline.outbox's
encode_parts) durably, one batch at a time, and returns only once it is on
disk:

- outbox: `Outbox.put(bundle)`, SQLite in WAL mode, synchronous=FULL, one
  fsync'd commit per put (or per group of concurrent puts).
- segment log (baseline): the simplest durable alternative, an append-only
  file: length + CRC header and the body, `os.write` then `os.fdatasync`.

The baseline has no index, no deletes of confirmed entries and no atomic
multi-entry commit; the outbox needs all three. The ratio says what they cost.
Runs on the disk under --dir (default var/bench-outbox; not /tmp, which may be
tmpfs where fsync is free). Usage:
    python -m bench.outbox
    python -m bench.outbox --seconds 3 --dir /var/lib/gateway/bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from gateway.batch import NS_PER_S, ReadingBatch
from gateway.bundle import Bundle
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.outbox_codec import encode_parts
from gateway.pipeline.outbox_file import OutboxSettings
from gateway.streams import StreamRegistry


def bundle(rows: int, start: int) -> Bundle:
    i = np.arange(start, start + rows)
    return Bundle(readings=ReadingBatch.of(i * NS_PER_S, i % 50, i * 0.1))


def streams() -> StreamRegistry:
    registry = StreamRegistry()
    for s in range(50):
        registry.register(f"dma-{s // 10:02d}/pz-{s % 10}/pressure_m", "m", "pressure")
    return registry


async def outbox_sequential(path: Path, rows: int, seconds: float) -> tuple[int, float]:
    box = Outbox.open(path, streams(), OutboxSettings(disk_quota_bytes=64 * 1024**3))
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await box.put(bundle(rows, n * rows))
        n += 1
    elapsed = time.perf_counter() - started
    box.close_file()
    return n, elapsed


async def outbox_concurrent(
    path: Path, rows: int, seconds: float, producers: int
) -> tuple[int, float]:
    box = Outbox.open(path, streams(), OutboxSettings(disk_quota_bytes=64 * 1024**3))
    counts = [0] * producers
    started = time.perf_counter()

    async def produce(k: int) -> None:
        while time.perf_counter() - started < seconds:
            await box.put(bundle(rows, (k * 10**7 + counts[k]) * rows))
            counts[k] += 1

    await asyncio.gather(*(produce(k) for k in range(producers)))
    elapsed = time.perf_counter() - started
    box.close_file()
    return sum(counts), elapsed


def segment_log(path: Path, rows: int, seconds: float) -> tuple[int, float]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            for _, _, _, _, body in encode_parts(bundle(rows, n * rows)):
                os.write(fd, struct.pack(">II", len(body), zlib.crc32(body)) + body)
            os.fdatasync(fd)  # what a careful segment log would call
            n += 1
    finally:
        os.close(fd)
    return n, time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    root = Path(args.dir)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"on {root.resolve()}, {args.seconds} s per case, each batch fsync'd before it counts")
    print(f"{'rows/batch':>10} {'contender':<28} {'batches/s':>10} {'ms/batch':>9} {'rows/s':>12}")
    try:
        for rows in args.rows:
            seg_n, seg_t = segment_log(root / f"seg-{rows}.log", rows, args.seconds)
            box_n, box_t = await outbox_sequential(root / f"seq-{rows}.sqlite", rows, args.seconds)
            for label, n, t in (
                ("segment log (baseline)", seg_n, seg_t),
                ("outbox, one producer", box_n, box_t),
            ):
                rate, ms = n / t, 1000 * t / n
                print(f"{rows:>10} {label:<28} {rate:>10,.0f} {ms:>9.2f} {rate * rows:>12,.0f}")
            ratio = (box_n / box_t) / (seg_n / seg_t)
            print(f"{'':>10} {'ratio outbox / segment log':<28} {ratio:>10.2f}")
        rows = args.rows[0]
        con_n, con_t = await outbox_concurrent(
            root / "concurrent.sqlite", rows, args.seconds, args.producers
        )
        label = f"outbox, {args.producers} producers"
        print(
            f"{rows:>10} {label:<28} {con_n / con_t:>10,.0f} {1000 * con_t / con_n:>9.2f} "
            f"{con_n * rows / con_t:>12,.0f}   (group commit: puts share one fsync)"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dir", default="var/bench-outbox")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rows", type=int, nargs="+", default=[1000, 10_000, 50_000])
    p.add_argument("--producers", type=int, default=8)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
