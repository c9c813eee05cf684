import asyncio
import dataclasses

from gateway.backoff import Backoff
from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.parts import Emit
from gateway.runtime import Runtime, RuntimeSettings
from tests.fakes import MemorySink

FAST = RuntimeSettings(
    batch_max_seconds=0.01,
    drain_timeout=1.0,
    restart_backoff=Backoff(initial=0.01, maximum=0.05),
)


@dataclasses.dataclass
class CountingSource:
    """Emits one reading per tick, numbered, so loss and duplicates show."""

    name: str
    stream: int
    fail_first: int = 0
    tick: float = 0.005
    runs: int = 0
    next_ts: int = 0

    async def run(self, emit: Emit) -> None:
        self.runs += 1
        if self.runs <= self.fail_first:
            raise ConnectionError(f"{self.name} failed (run {self.runs})")
        while True:
            batch = ReadingBatch.of([self.next_ts], [self.stream], [float(self.next_ts)])
            await emit(Bundle(readings=batch))
            self.next_ts += 1
            await asyncio.sleep(self.tick)


def assert_nothing_lost(stored: list[int], next_ts: int) -> None:
    """Every emit that returned is stored, once, in order. The emit in flight when the
    stop came may be stored too, without its source having seen it return."""
    confirmed = list(range(next_ts))
    assert stored in (confirmed, [*confirmed, next_ts]), (stored[-3:], next_ts)


async def run_for(runtime: Runtime, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5.0)


async def test_failed_source_is_restarted_while_others_keep_running() -> None:
    flaky = CountingSource("flaky", stream=0, fail_first=3)
    steady = CountingSource("steady", stream=1)
    sink = MemorySink()
    runtime = Runtime([flaky, steady], [sink], settings=FAST)
    await run_for(runtime, 0.5)
    assert flaky.runs == 4
    assert runtime.source_stats["flaky"].restarts == 3
    assert "ConnectionError" in runtime.source_stats["flaky"].last_error
    steady_ts = [ts for stream, ts in sink.ts if stream == 1]
    assert_nothing_lost(steady_ts, steady.next_ts)
    assert_nothing_lost([ts for stream, ts in sink.ts if stream == 0], flaky.next_ts)
    assert sink.opened and sink.closed


async def test_unreachable_sink_holds_readings_in_memory_then_delivers() -> None:
    source = CountingSource("meter", stream=0)
    sink = MemorySink(down=True)
    settings = dataclasses.replace(
        FAST, restart_backoff=Backoff(initial=0.01, maximum=0.02), drain_timeout=3.0
    )
    runtime = Runtime([source], [sink], settings=settings)
    runtime.deliveries[0].backoff = Backoff(initial=0.01, maximum=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await asyncio.sleep(0.3)
    assert sink.ts == []
    assert runtime.deliveries[0].stats.up is False
    assert runtime.deliveries[0].queue.rows > 0
    sink.down = False
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5.0)
    assert_nothing_lost([ts for _, ts in sink.ts], source.next_ts)
    assert runtime.deliveries[0].stats.up is True
    assert runtime.deliveries[0].stats.rows_abandoned == 0


async def test_full_queue_pushes_back_on_the_source() -> None:
    source = CountingSource("meter", stream=0, tick=0.0)
    sink = MemorySink(down=True)
    one_row = Bundle(readings=ReadingBatch.of([0], [0], [0.0])).nbytes
    settings = dataclasses.replace(
        FAST, queue_max_bytes=one_row * 50, batch_max_rows=50, drain_timeout=0.1
    )
    runtime = Runtime([source], [sink], settings=settings)
    await run_for(runtime, 0.3)
    delivery = runtime.deliveries[0]
    # one batch of up to 50 rows is in flight at the sink, 50 more fill the queue
    assert source.next_ts <= 101, "the source must wait once the byte bound is reached"
    assert delivery.stats.rows_abandoned == source.next_ts
    assert sink.closed


async def test_stop_drains_everything_queued() -> None:
    source = CountingSource("meter", stream=0, tick=0.0)
    sink = MemorySink()
    settings = dataclasses.replace(FAST, batch_max_seconds=5.0, batch_max_rows=10**9)
    runtime = Runtime([source], [sink], settings=settings)
    await run_for(runtime, 0.2)
    assert source.next_ts > 0
    assert_nothing_lost([ts for _, ts in sink.ts], source.next_ts)
