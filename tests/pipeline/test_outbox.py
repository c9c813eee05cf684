"""The durable outbox on a real file: round trips, restarts, live first, quota, damage."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from gateway.batch import AggregateBatch, FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, Event, Reject, Severity
from gateway.parts import QueueClosed
from gateway.pipeline.outbox import Outbox, open_outboxes
from gateway.pipeline.outbox_command import read_stats, recover, register
from gateway.pipeline.outbox_file import OutboxCorrupt, OutboxSettings
from tests.fakes import numbered_registry


def readings(n: int, start: int = 0) -> Bundle:
    ts = np.arange(start, start + n)
    return Bundle(readings=ReadingBatch.of(ts, ts % 3, ts * 0.5))


def everything() -> Bundle:
    fixes = FixBatch(
        np.array([5, 6], np.int64),
        np.array([0, 1], np.int32),
        np.array([18.5, np.nan]),
        np.array([73.8, 73.9]),
        np.array([1.0, np.nan], np.float32),
        np.array([0.0, 90.0], np.float32),
        np.array([3, 2], np.uint8),
    )
    aggregates = AggregateBatch(*(np.array([v], d) for v, d in zip(
        [60, 1, 60, 0.5, 2.0, 1.0, 60.0, 1.5], AggregateBatch.DTYPES.values(), strict=True
    )))  # fmt: skip
    alert = Alert(
        "leak", "dma-07", Severity.CRITICAL, 10, magnitude=2.5,
        evidence={"flow": np.float64(3.5), "series": np.arange(3)}, needs_ack=True,
    ).update(20, score=0.9)  # fmt: skip
    return Bundle(
        readings=readings(3).readings,
        fixes=fixes,
        aggregates=aggregates,
        events=(Event(7, "dma-07/inlet", "tamper", "lid", {"bit": 3}),),
        alerts=(alert,),
        rejects=(Reject(8, "mqtt:x", "bad_json", "no", b"\x00{"),),
    )


def same(a: Bundle, b: Bundle) -> None:
    for part in ("readings", "fixes", "aggregates"):
        for x, y in zip(getattr(a, part).columns(), getattr(b, part).columns(), strict=True):
            np.testing.assert_array_equal(x, y)
    assert a.events == b.events and a.rejects == b.rejects
    assert [x.to_dict() | {"evidence": None} for x in a.alerts] == [
        y.to_dict() | {"evidence": None} for y in b.alerts
    ]
    assert b.alerts[0].evidence["series"] == [0, 1, 2]


async def test_every_part_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox.open(path, numbered_registry())
    await box.put(everything())
    assert box.rows == len(everything())
    box.close_file()
    again = Outbox.open(path, numbered_registry())
    assert len(again) == 2  # a raw part and a keep part
    got = await again.take(max_rows=1000, max_wait=0)
    assert got is not None
    same(everything(), got)
    await again.confirm()
    assert again.rows == 0 and len(again) == 0
    again.close_file()
    assert read_stats(path).entries == 0


async def test_release_keeps_entries_for_the_next_take(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "o.sqlite", numbered_registry())
    await box.put(readings(10))
    first = await box.take(100, 0)
    await box.release()
    second = await box.take(100, 0)
    assert first is not None and second is not None
    np.testing.assert_array_equal(first.readings.ts, second.readings.ts)
    with pytest.raises(RuntimeError, match="confirm or release"):
        await box.take(100, 0)
    await box.confirm()
    await box.close()
    assert await box.take(100, 0) is None
    with pytest.raises(QueueClosed):
        await box.put(readings(1))


async def test_take_batches_up_to_max_rows_in_order(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "o.sqlite", numbered_registry())
    for i in range(5):
        await box.put(readings(10, start=i * 10))
    got = await box.take(max_rows=25, max_wait=0)
    assert got is not None and got.readings.ts.tolist() == list(range(20))
    await box.confirm()
    got = await box.take(max_rows=1000, max_wait=0)
    assert got is not None and got.readings.ts.tolist() == list(range(20, 50))


async def test_live_data_goes_before_the_backlog(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "o.sqlite", numbered_registry(), OutboxSettings(live_window_s=0.2))
    for i in range(3):
        await box.put(readings(10, start=i * 10))  # the backlog of an outage
    await asyncio.sleep(0.3)
    await box.put(readings(10, start=1000))  # now
    order = []
    while len(box):
        got = await box.take(max_rows=15, max_wait=0)
        assert got is not None
        order.append(int(got.readings.ts[0]))
        await box.confirm()
    assert order == [1000, 0, 10, 20], "live first, then the backlog oldest-first"


async def test_concurrent_puts_share_commits_and_all_land(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "o.sqlite", numbered_registry())
    await asyncio.gather(*(box.put(readings(100, start=i * 100)) for i in range(50)))
    assert box.rows == 5000
    assert box.stats().accepted_rows == 5000


async def test_put_waits_when_uncommitted_bytes_reach_the_bound(tmp_path: Path) -> None:
    one = readings(4000)  # ~84 kB encoded
    box = Outbox.open(
        tmp_path / "o.sqlite", numbered_registry(), OutboxSettings(max_memory_bytes=100_000)
    )
    async with box._lock:  # the disk is stuck: nothing commits
        first = asyncio.create_task(box.put(one))
        second = asyncio.create_task(box.put(one))
        await asyncio.sleep(0.1)
        assert box.stats().pending_bytes < 100_000 + 90_000
        assert not first.done() and not second.done()
        assert box.nbytes <= 100_000, "the second bundle must wait outside memory"
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert box.rows == 8000


async def test_the_disk_quota_sheds_oldest_raw_readings_and_never_alerts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox.open(path, numbered_registry(), OutboxSettings(disk_quota_bytes=1024 * 1024))
    alert = Alert("burst", "dma-01", Severity.CRITICAL, 1)
    await box.put(Bundle(alerts=(alert,)))
    for i in range(12):  # 12 x ~210 kB of readings into 1 MiB
        await box.put(readings(10_000, start=i * 10_000))
    s = box.stats()
    assert s.stored_bytes <= 1024 * 1024
    assert s.shed_rows > 0 and s.shed_entries > 0
    assert s.shed_rows + s.rows - 1 == 120_000, "every reading is stored or counted as shed"
    kept = []
    while len(box):
        got = await box.take(max_rows=1_000_000, max_wait=0)
        assert got is not None
        kept.append(got)
        await box.confirm()
    merged = Bundle.merge(kept)
    assert [a.id for a in merged.alerts] == [alert.id]
    # the newest readings are the ones kept
    assert int(merged.readings.ts.max()) == 119_999
    assert int(merged.readings.ts.min()) == s.shed_rows
    assert read_stats(path).shed_rows == s.shed_rows


def test_a_file_that_is_not_an_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(OutboxCorrupt, match="gateway outbox recover"):
        Outbox.open(path, numbered_registry())
    assert path.read_bytes().startswith(b"this is not"), "never silently replaced"


async def test_a_truncated_outbox_is_refused_then_recovered(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox.open(path, numbered_registry())
    for i in range(40):
        await box.put(readings(2000, start=i * 2000))
    box._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    box.close_file()
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(OutboxCorrupt, match="recover"):
        Outbox.open(path, numbered_registry())
    kept, lost, aside = recover(path)
    assert aside.exists() and kept > 0 and lost > 0 and kept + lost == 40
    fresh = Outbox.open(path, numbered_registry())
    assert len(fresh) == kept
    assert fresh.stats().corrupt_entries == lost
    got = await fresh.take(max_rows=10**6, max_wait=0)
    assert got is not None and len(got.readings) == kept * 2000


async def test_a_damaged_entry_is_quarantined_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox.open(path, numbered_registry())
    await box.put(readings(10))
    await box.put(readings(10, start=10))
    box._db.execute("UPDATE entries SET crc = crc + 1 WHERE seq = 1")
    got = await box.take(max_rows=100, max_wait=0)
    assert got is not None and got.readings.ts.tolist() == list(range(10, 20))
    await box.confirm()
    assert box.stats().corrupt_entries == 1 and len(box) == 0
    (n,) = box._db.execute("SELECT count(*) FROM quarantine").fetchone()
    assert n == 1


async def test_outbox_stats_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox.open(path, numbered_registry())
    await box.put(readings(7))
    parser = argparse.ArgumentParser(prog="gateway")
    register(parser.add_subparsers())
    args = parser.parse_args(["outbox", "stats", str(path), "--json"])
    assert args.func(args) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["entries"] == 1 and figures["rows"] == 7 and figures["shed_rows"] == 0
    args = parser.parse_args(["outbox", "stats", str(path)])
    assert args.func(args) == 0
    assert "1 entries, 7 rows" in capsys.readouterr().out
    missing = parser.parse_args(["outbox", "stats", str(tmp_path / "none.sqlite")])
    assert missing.func(missing) == 1
    names = {m.name for m in box.measurements()}
    assert {"outbox_rows", "outbox_oldest_age_seconds", "outbox_shed_rows"} <= names


def test_open_outboxes_gives_one_file_per_sink_and_refuses_a_damaged_one(
    tmp_path: Path,
) -> None:
    settings = OutboxSettings(directory=str(tmp_path))
    boxes = open_outboxes(["postgres", "mqtt"], settings, numbered_registry())
    assert {b.path.name for b in boxes.values()} == {
        "outbox-postgres.sqlite",
        "outbox-mqtt.sqlite",
    }
    for box in boxes.values():
        box.close_file()
    settings.path_for("mqtt").write_bytes(b"garbage" * 1000)
    with pytest.raises(OutboxCorrupt, match=r"outbox-mqtt\.sqlite"):
        open_outboxes(["postgres", "mqtt"], settings, numbered_registry())


async def test_live_and_backlog_take_turns_so_neither_starves(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path / "o.sqlite", numbered_registry(), OutboxSettings(live_window_s=0.2))
    for i in range(3):
        await box.put(readings(10, start=i * 10))
    await asyncio.sleep(0.3)
    order = []
    for k in range(3):
        await box.put(readings(10, start=1000 + k * 10))  # live data keeps arriving
        for _ in range(2):
            got = await box.take(max_rows=10, max_wait=0)
            assert got is not None
            order.append(int(got.readings.ts[0]))
            await box.confirm()
    assert order == [1000, 0, 1010, 10, 1020, 20]


def test_stats_finds_the_outboxes_of_a_config_or_of_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main  # noqa: PLC0415 - the whole CLI, only here

    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[outbox]\ndirectory = "{tmp_path / "box"}"\n[sinks.central]\ntype = "postgres"\n'
    )
    Outbox.open(tmp_path / "box" / "outbox-central.sqlite", numbered_registry()).close_file()
    assert main(["outbox", "stats", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "outbox-central.sqlite" in out and "dead letters   0 entries" in out
    monkeypatch.chdir(tmp_path)
    assert main(["outbox", "stats"]) == 1
    assert "no outbox in var/outbox/; name the files, or give" in capsys.readouterr().err
