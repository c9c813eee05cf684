import asyncio

import numpy as np
import pytest

from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.parts import QueueClosed
from gateway.pipeline.queue import BundleQueue


def rows(n: int, start: int = 0) -> Bundle:
    return Bundle(readings=ReadingBatch.of(np.arange(start, start + n), np.zeros(n), np.ones(n)))


async def test_take_merges_up_to_max_rows_in_order() -> None:
    q = BundleQueue(max_bytes=1 << 20)
    for i in range(5):
        await q.put(rows(10, start=i * 10))
    first = await q.take(max_rows=25, max_wait=0.0)
    assert first is not None
    assert first.readings.ts.tolist() == list(range(20))
    second = await q.take(max_rows=1000, max_wait=0.0)
    assert second is not None and second.readings.ts.tolist() == list(range(20, 50))
    assert q.rows == 0 and q.nbytes == 0


async def test_put_waits_when_full_and_resumes_when_drained() -> None:
    one = rows(100)
    q = BundleQueue(max_bytes=one.nbytes * 2)
    await q.put(one)
    await q.put(one)
    blocked = asyncio.create_task(q.put(one))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "a full queue must push back on the source"
    await q.take(max_rows=100, max_wait=0.0)
    await asyncio.wait_for(blocked, 1.0)
    assert q.rows == 200


async def test_oversized_bundle_enters_an_empty_queue() -> None:
    q = BundleQueue(max_bytes=10)
    await asyncio.wait_for(q.put(rows(1000)), 1.0)
    assert q.rows == 1000


async def test_take_waits_for_more_rows_until_max_wait() -> None:
    q = BundleQueue(max_bytes=1 << 20)
    await q.put(rows(1))

    async def later() -> None:
        await asyncio.sleep(0.05)
        await q.put(rows(1, start=1))

    task = asyncio.create_task(later())
    got = await q.take(max_rows=2, max_wait=2.0)
    await task
    assert got is not None and len(got.readings) == 2


async def test_close_ends_take_and_refuses_put() -> None:
    q = BundleQueue(max_bytes=1 << 20)
    await q.put(rows(3))
    await q.close()
    last = await q.take(max_rows=10, max_wait=5.0)
    assert last is not None and len(last.readings) == 3
    assert await q.take(max_rows=10, max_wait=5.0) is None
    with pytest.raises(QueueClosed):
        await q.put(rows(1))
