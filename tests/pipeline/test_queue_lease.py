"""BundleQueue's take / confirm / release: what Delivery relies on."""

import numpy as np

from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.pipeline.queue import BundleQueue


def rows(n: int, start: int = 0) -> Bundle:
    return Bundle(readings=ReadingBatch.of(np.arange(start, start + n), np.zeros(n), np.ones(n)))


async def test_release_puts_the_taken_bundle_back_at_the_front() -> None:
    q = BundleQueue(max_bytes=1 << 20)
    await q.put(rows(10))
    await q.put(rows(10, start=10))
    first = await q.take(max_rows=10, max_wait=0)
    assert first is not None and q.rows == 10
    await q.release()
    assert q.rows == 20
    again = await q.take(max_rows=100, max_wait=0)
    assert again is not None and again.readings.ts.tolist() == list(range(20))
    await q.confirm()
    assert q.rows == 0 and q.nbytes == 0
    await q.release()  # nothing taken: nothing to put back
    assert q.rows == 0
