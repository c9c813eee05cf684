"""A write that can never succeed is set aside, and nothing else stops: the runtime keeps
its sources and other sinks running, and the outbox does not block behind the bad entry."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gateway.backoff import Backoff
from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.metrics import render
from gateway.parts import Emit, SinkRejected
from gateway.pipeline.outbox import Outbox
from gateway.pipeline.outbox_command import read_stats
from gateway.pipeline.outbox_file import OutboxError
from gateway.pipeline.queue import BundleQueue
from gateway.runtime import Runtime, RuntimeSettings
from tests.fakes import numbered_registry

FAST = RuntimeSettings(
    batch_max_rows=1000,
    batch_max_seconds=0.01,
    drain_timeout=2.0,
    restart_backoff=Backoff(initial=0.01, maximum=0.02),
)
POISON = -1.0


@dataclasses.dataclass
class Numbers:
    """Emits readings 0..n-1 one bundle each; reading `poison_at` carries POISON."""

    n: int
    poison_at: int
    name: str = "numbers"

    async def run(self, emit: Emit) -> None:
        for i in range(self.n):
            value = POISON if i == self.poison_at else float(i)
            await emit(Bundle(readings=ReadingBatch.of([i], [0], [value])))
            await asyncio.sleep(0.002)
        await asyncio.Event().wait()


@dataclasses.dataclass
class PickySink:
    """Stores readings; a bundle holding POISON fails as `error` says."""

    name: str
    error: type[Exception] | None = None
    values: list[float] = dataclasses.field(default_factory=list)

    async def open(self) -> None:
        pass

    async def write(self, bundle: Bundle) -> None:
        values = bundle.readings.value.tolist()
        if self.error is not None and POISON in values:
            if self.error is SinkRejected:
                raise SinkRejected("value out of the column's range")
            raise self.error("index 227 is out of bounds for axis 0 with size 227")
        self.values.extend(values)

    async def close(self) -> None:
        pass


async def run_until(runtime: Runtime, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    async with asyncio.timeout(30):
        while not done():
            await asyncio.sleep(0.02)
    stop.set()
    await task


@pytest.mark.parametrize("error", [IndexError, SinkRejected])
async def test_a_bad_entry_is_set_aside_while_everything_else_flows(
    tmp_path: Path, error: type[Exception]
) -> None:
    reg = numbered_registry()
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox.open(path, reg)
    picky = PickySink("picky", error)
    other = PickySink("other")
    runtime = Runtime(
        [Numbers(200, poison_at=50)],
        [picky, other],
        settings=FAST,
        queue_for=lambda s: outbox if s is picky else BundleQueue(1 << 20),
    )
    await run_until(
        runtime,
        lambda: len(picky.values) == 199 and len(other.values) == 200 and not outbox.rows,
    )
    assert sorted(picky.values) == [float(i) for i in range(200) if i != 50]
    assert sorted(other.values) == sorted([float(i) for i in range(200) if i != 50] + [POISON])
    stats = outbox.stats()
    assert (stats.dead_entries, stats.dead_rows, stats.entries) == (1, 1, 0)
    outbox.close_file()
    assert read_stats(path).dead_entries == 1
    db = sqlite3.connect(path)
    ((reason,),) = db.execute("SELECT reason FROM dead_letters").fetchall()
    db.close()
    assert ("IndexError" in reason) if error is IndexError else ("refused by picky" in reason)
    if error is IndexError:
        assert runtime.delivery_stats["picky"].restarts >= 1
    text = render([runtime, outbox]).decode()
    assert 'gateway_outbox_dead_letter_entries_total{outbox="outbox"} 1.0' in text


async def test_an_outbox_of_the_old_format_with_entries_is_refused_not_guessed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox.open(path, numbered_registry())
    await box.put(Bundle(readings=ReadingBatch.of([1], [0], [1.0])))
    box.close_file()
    db = sqlite3.connect(path)
    db.execute("UPDATE counters SET value = 1 WHERE name = 'format'")
    db.commit()
    db.close()
    with pytest.raises(OutboxError, match=r"format 1 and holds 1 entries .*not guessed at"):
        Outbox.open(path, numbered_registry())


async def test_an_empty_outbox_of_the_old_format_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox.open(path, numbered_registry()).close_file()
    db = sqlite3.connect(path)
    db.execute("UPDATE counters SET value = 1 WHERE name = 'format'")
    db.commit()
    db.close()
    box = Outbox.open(path, numbered_registry())
    await box.put(Bundle(readings=ReadingBatch.of([1], [0], [1.0])))
    got = await box.take(10, 0)
    assert got is not None and got.readings.value.tolist() == [1.0]
    assert np.array_equal(got.readings.stream, [0])
