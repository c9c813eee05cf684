"""A gateway process for the fault tests: a counting source -> Outbox -> PostgresSink.

    python tests/pipeline/gateway_process.py DSN OUTBOX MARK [--kill-after-copy N]
        [--kill-after-commit N] [--drain] [--rows N] [--limit N]

Reading i has ts = T0 + i µs, stream 0, value i. After each bundle is accepted
(the outbox committed it) the source writes i+rows to MARK and fsyncs it, so
the test knows what was accepted when the process is killed. --drain runs no
source and exits 0 once the outbox is empty. --kill-after-copy N sends SIGKILL
to itself inside the Nth write, after the COPY and before the commit;
--kill-after-commit N right after the Nth commit, before the outbox confirms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.parts import Emit
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.outbox_file import OutboxSettings
from gateway.runtime import Runtime, RuntimeSettings
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry

T0 = 0  # set from --t0: the test's origin, so both agree on what value sits at which ts


def batch(start: int, n: int) -> Bundle:
    i = np.arange(start, start + n)
    return Bundle(readings=ReadingBatch.of(T0 + i * 1000, np.zeros(n), i.astype(np.float64)))


class CountingSource:
    name = "counter"

    def __init__(self, start: int, rows: int, limit: int, mark: Path) -> None:
        self.next = start
        self.rows = rows
        self.limit = limit
        self.mark = mark

    async def run(self, emit: Emit) -> None:
        while self.next < self.limit:
            n = min(self.rows, self.limit - self.next)
            await emit(batch(self.next, n))
            self.next += n
            tmp = self.mark.with_suffix(".tmp")  # write, fsync, rename: never half a mark
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.write(fd, str(self.next).encode())
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, self.mark)
            await asyncio.sleep(0.005)


class KillingSink(PostgresSink):
    def __init__(self, *a: Any, after_copy: int, after_commit: int, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.after_copy = after_copy
        self.after_commit = after_commit
        self.copies = 0
        self.commits = 0

    async def _copy(self, cur: Any, target: str, payload: bytes) -> None:  # type: ignore[override]
        await PostgresSink._copy(cur, target, payload)
        self.copies += 1
        if self.copies == self.after_copy:
            os.kill(os.getpid(), signal.SIGKILL)

    async def write(self, bundle: Bundle) -> None:
        await super().write(bundle)
        self.commits += 1
        if self.commits == self.after_commit:
            os.kill(os.getpid(), signal.SIGKILL)


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("dsn")
    p.add_argument("outbox")
    p.add_argument("mark")
    p.add_argument("--kill-after-copy", type=int, default=0)
    p.add_argument("--kill-after-commit", type=int, default=0)
    p.add_argument("--drain", action="store_true")
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--limit", type=int, default=10**9)
    p.add_argument("--t0", type=int, required=True, help="ns of reading 0")
    args = p.parse_args()
    global T0  # noqa: PLW0603 - a script's one setting, read by batch()
    T0 = args.t0
    registry = StreamRegistry()
    registry.register("dma-01/inlet/flow_lps", "L/s", "flow")
    sink = KillingSink(
        args.dsn,
        registry,
        "gw-fault",
        after_copy=args.kill_after_copy,
        after_commit=args.kill_after_commit,
    )
    outbox = Outbox.open(args.outbox, registry, OutboxSettings(live_window_s=1.0))
    mark = Path(args.mark)
    start = int(mark.read_text()) if mark.exists() else 0
    sources = [] if args.drain else [CountingSource(start, args.rows, args.limit, mark)]
    settings = RuntimeSettings(batch_max_rows=5000, batch_max_seconds=0.05, drain_timeout=30)
    runtime = Runtime(sources, [sink], settings=settings, queue_for=lambda _: outbox)
    stop = asyncio.Event()

    async def stop_when_drained() -> None:
        await asyncio.sleep(0.2)
        while outbox.rows:
            await asyncio.sleep(0.05)
        stop.set()

    watcher = asyncio.create_task(stop_when_drained()) if args.drain else None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await runtime.run(stop)
    if watcher is not None:
        await watcher
    outbox.close_file()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
