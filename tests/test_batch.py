import numpy as np
import pytest

from gateway.batch import AggregateBatch, FixBatch, Quality, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, AlertState, Event, Reject, Severity


def batch(n: int, start: int = 0) -> ReadingBatch:
    return ReadingBatch.of(np.arange(start, start + n) * 10, np.arange(n) % 3, np.arange(n) * 1.5)


def test_dtypes_are_pinned_and_checked() -> None:
    b = batch(4)
    assert [c.dtype for c in b.columns()] == [np.int64, np.int32, np.float64, np.uint8]
    with pytest.raises(TypeError, match="stream must be a 1-D int32"):
        ReadingBatch(b.ts, b.stream.astype(np.int64), b.value, b.quality)
    with pytest.raises(ValueError, match="differ in length"):
        ReadingBatch(b.ts, b.stream[:2], b.value, b.quality)


def test_slice_is_a_view_and_mask_selects() -> None:
    b = batch(10)
    part = b[2:5]
    assert len(part) == 3
    assert np.shares_memory(part.value, b.value)
    good = b[b.value > 6.0]
    assert good.value.tolist() == [7.5, 9.0, 10.5, 12.0, 13.5]
    with pytest.raises(TypeError):
        b[3]  # type: ignore[index]


def test_concat_keeps_order_and_single_batch_is_returned_as_is() -> None:
    a, b = batch(3), batch(2, start=100)
    both = ReadingBatch.concat([a, b])
    assert both.ts.tolist() == [0, 10, 20, 1000, 1010]
    assert ReadingBatch.concat([a]) is a
    assert len(ReadingBatch.concat([])) == 0
    assert both.nbytes == 5 * (8 + 4 + 8 + 1)


def test_sorted_by_time_is_stable() -> None:
    b = ReadingBatch.of([30, 10, 10, 20], [0, 1, 2, 3], [1, 2, 3, 4])
    s = b.sorted_by_time()
    assert s.ts.tolist() == [10, 10, 20, 30]
    assert s.stream.tolist() == [1, 2, 3, 0]
    assert b.sorted_by_time() is not b
    assert s.sorted_by_time() is s
    assert s.time_span() == (10, 30)


def test_quality_flags_describe() -> None:
    assert Quality.describe(0) == "OK"
    assert Quality.describe(Quality.TIMEOUT | Quality.COMM_ERROR) == "COMM_ERROR|TIMEOUT"


def test_fix_and_aggregate_batches_share_the_behaviour() -> None:
    fixes = FixBatch(
        np.array([1, 2], np.int64),
        np.array([0, 1], np.int32),
        np.array([18.52, 18.53]),
        np.array([73.85, 73.86]),
        np.array([5.0, np.nan], np.float32),
        np.array([90.0, 180.0], np.float32),
        np.array([3, 3], np.uint8),
    )
    assert len(FixBatch.concat([fixes, fixes[1:]])) == 3
    assert len(AggregateBatch.empty()) == 0


def test_bundle_merges_every_part() -> None:
    alert = Alert("leak", "dma-01", Severity.WARNING, opened_at=5)
    event = Event(ts=1, asset="dma-01/inlet", kind="tamper")
    reject = Reject(ts=1, source="mqtt:x", reason="bad_json", payload=b"x" * 10_000)
    merged = Bundle.merge(
        [
            Bundle(readings=batch(3), alerts=(alert,)),
            Bundle(readings=batch(2), events=(event,)),
            Bundle(rejects=(reject,)),
        ]
    )
    assert len(merged.readings) == 5
    assert merged.alerts == (alert,) and merged.events == (event,)
    assert len(merged) == 8
    assert len(merged.rejects[0].payload) == Reject.MAX_PAYLOAD


def test_alert_lifecycle() -> None:
    a = Alert("burst", "dma-02", Severity.CRITICAL, opened_at=100, magnitude=12.0)
    same = Alert("burst", "dma-02", Severity.WARNING, opened_at=100)
    assert a.id == same.id, "the id depends on kind, asset and open time only"
    u = a.update(200, magnitude=15.0, evidence={"step_lps": 15.0})
    assert (u.state, u.updated_at, u.id, u.magnitude) == (AlertState.UPDATED, 200, a.id, 15.0)
    c = u.clear(300)
    assert not c.is_open and c.cleared_at == 300
    assert c.clear(400) is c
    with pytest.raises(ValueError, match="cleared"):
        c.update(500, score=1.0)
    acked = c.acknowledge("asha", 450)
    assert acked.acknowledged and acked.acked_at == 450
    assert acked.to_dict()["severity"] == "critical"
    with pytest.raises(TypeError, match="cannot update"):
        a.update(1, kind="other")
    with pytest.raises(TypeError):
        u.evidence["x"] = 1  # type: ignore[index]
