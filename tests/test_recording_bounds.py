"""The recorder's bounds: a full disk, a writer that falls behind, a recording cut short."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from gateway import cli
from gateway.batch import FixBatch, ReadingBatch
from gateway.build import build
from gateway.bundle import Bundle
from gateway.config import ConfigError
from gateway.events import Event, Reject
from gateway.parts import Emit
from gateway.recording import RecordedSource, Recorder
from gateway.recording_reader import RecordingReader, RecordingReadError
from gateway.recording_replay import replay_recording
from gateway.settings import Settings, settings_from
from gateway.streams import StreamRegistry

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


@dataclasses.dataclass
class Read:
    bundles: list[Bundle]
    registry: StreamRegistry
    truncated: bool


def read_recording(folder: Path) -> Read:
    """The whole recording in memory (for tests; a replay streams it)."""
    reader = RecordingReader(folder)
    bundles = [b for _, b in reader]
    return Read(bundles, reader.registry, reader.truncated)


def bundle(registry: StreamRegistry, i: int, rows: int = 10) -> Bundle:
    sid = registry.register("dma-01/inlet/flow_lps", "L/s", "flow")
    vid = registry.vehicles.intern("MH12-PM-0001")
    ts = T0 + i * 1_000_000_000 + np.arange(rows, dtype=np.int64) * 1_000_001
    values = np.linspace(0.1, 1.0 / 3.0, rows)
    values[0] = math.nan if i % 2 else math.inf
    fixes = FixBatch(
        ts[:2],
        np.full(2, vid, np.int32),
        np.asarray([18.5204303, 18.52]),
        np.asarray([73.8567437, 73.85]),
        np.asarray([8.333333, math.nan], np.float32),
        np.asarray([271.5, 0.1], np.float32),
        np.asarray([3, 0], np.uint8),
    )
    return Bundle(
        readings=ReadingBatch.of(ts, np.full(rows, sid), values, np.full(rows, i % 3)),
        fixes=fixes,
        # bundle 1 has neither events nor rejects: empty parts read back as empty
        events=(Event(int(ts[0]), "bus/MH12-PM-0001", "dtc", "SPN 110", {"faults": [], "n": i}),)
        * (i != 1),
        rejects=(Reject(int(ts[1]), "mqtt:pmpml/v1/x/pvt", "bad_json", "no", b"\x00{,\n"),)
        * (i != 1),
        live=i != 2,
    )


class Finite:
    """A source whose input ends (as a replay's does): `count` bundles, then it returns."""

    name = "finite"

    def __init__(self, registry: StreamRegistry, count: int) -> None:
        self.registry, self.count = registry, count

    async def run(self, emit: Emit) -> None:
        for i in range(self.count):
            await emit(bundle(self.registry, i))
            await asyncio.sleep(0.01)


async def record(recorder: Recorder, source: Finite) -> list[Bundle]:
    passed: list[Bundle] = []

    async def emit(b: Bundle) -> None:
        passed.append(b)

    await RecordedSource(source, recorder).run(emit)
    return passed


async def test_a_full_disk_stops_the_recording_with_a_log_line_and_ingest_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = StreamRegistry()
    folder = tmp_path / "rec"
    recorder = Recorder(folder, registry, Settings(), flush_s=0.02)
    folder.mkdir()
    os.symlink("/dev/full", folder / "readings.csv")  # every write there: ENOSPC, as on a full disk
    with caplog.at_level("ERROR", logger="gateway.recording"):
        passed = await record(recorder, Finite(registry, 20))
    assert len(passed) == 20, "every bundle still reached the pipeline"
    assert "No space left on device" in recorder.stopped
    (line,) = [r for r in caplog.records if r.getMessage() == "recording.stopped"]
    assert line._fields["directory"] == str(folder)  # type: ignore[attr-defined]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "No space left on device" in manifest["stopped"]


async def test_too_little_free_space_left_for_the_outbox_stops_the_recording(
    tmp_path: Path,
) -> None:
    registry = StreamRegistry()
    recorder = Recorder(tmp_path / "rec", registry, Settings(), flush_s=0.02, min_free_bytes=2**62)
    assert len(await record(recorder, Finite(registry, 5))) == 5
    assert recorder.stopped.startswith("less than")
    assert not (tmp_path / "rec" / "readings.csv").exists()


async def test_a_writer_that_falls_behind_drops_and_counts_instead_of_holding_up_ingest(
    tmp_path: Path,
) -> None:
    registry = StreamRegistry()
    one = bundle(registry, 0).nbytes + 64  # what the recorder counts per bundle
    recorder = Recorder(tmp_path / "rec", registry, Settings(), max_pending_bytes=3 * one)
    for i in range(5):  # the writer has not run yet: three fit, two are dropped
        recorder.tap("finite", bundle(registry, i))
    assert recorder.stats.dropped == 2
    recorder.attach()
    writer = recorder.detach()
    assert writer is not None
    writer.join()
    manifest = json.loads((tmp_path / "rec" / "manifest.json").read_text())
    assert manifest["counts"]["bundles"] == 3 and manifest["counts"]["dropped"] == 2
    assert len(read_recording(tmp_path / "rec").bundles) == 3


async def test_what_was_recorded_reads_back_exactly_and_a_cut_bundle_is_left_out(
    tmp_path: Path,
) -> None:
    registry = StreamRegistry()
    folder = tmp_path / "rec"
    recorder = Recorder(folder, registry, Settings(), flush_s=0.02)
    await record(recorder, Finite(registry, 4))
    rec = read_recording(folder)
    assert not rec.truncated and len(rec.bundles) == 4
    for i, got in enumerate(rec.bundles):
        want = bundle(registry, i)
        names = rec.registry.names_of(got.readings.stream)
        assert set(names.tolist()) == {"dma-01/inlet/flow_lps"}
        assert rec.registry.info(int(got.readings.stream[0])).unit == "L/s"
        for col in ("ts", "value", "quality"):
            np.testing.assert_array_equal(getattr(got.readings, col), getattr(want.readings, col))
        for col in ("ts", "lat", "lon", "speed", "heading", "fix"):
            np.testing.assert_array_equal(getattr(got.fixes, col), getattr(want.fixes, col))
        assert got.events == want.events and got.rejects == want.rejects
        assert got.live is want.live
    # a kill in the middle of a write: the last bundle's readings are cut short
    text = (folder / "readings.csv").read_text()
    for cut_at in (1, 3, 40):
        (folder / "readings.csv").write_text(text[: len(text) - cut_at])
        cut = read_recording(folder)
        assert cut.truncated and len(cut.bundles) == 3
    (folder / "readings.csv").write_text(text.replace(",", ";", 1))
    with pytest.raises(RecordingReadError, match=r"readings\.csv: line 1: header must be"):
        read_recording(folder)


def test_recording_into_a_folder_that_holds_something_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("x\n")
    settings = settings_from(
        {"sinks": {"store": {"type": "sqlite", "path": str(tmp_path / "s.sqlite")}}}
    )
    with pytest.raises(ConfigError, match="not an empty folder") as info:
        build(settings, record=tmp_path)
    assert info.value.key == "--record"


async def test_a_recording_without_its_config_asks_for_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = StreamRegistry()
    await record(
        Recorder(tmp_path / "rec", registry, Settings(), flush_s=0.02), Finite(registry, 1)
    )
    with pytest.raises(RecordingReadError, match="give the gateway's config with --config"):
        replay_recording(tmp_path / "rec", progress=False)
    assert cli.main(["replay", "--recording", str(tmp_path / "rec")]) == 2
    assert "--config FILE" in capsys.readouterr().err
    assert cli.main(["replay", "--recording", str(tmp_path), "--plot", "x.png"]) == 2
    assert cli.main(["replay", "--recording", str(tmp_path / "nothing-here")]) == 2
    assert "is not a recording" in capsys.readouterr().err


async def test_a_restarted_source_goes_on_recording_into_the_same_files(tmp_path: Path) -> None:
    registry = StreamRegistry()
    folder = tmp_path / "rec"
    recorder = Recorder(folder, registry, Settings(), flush_s=0.02)
    await record(recorder, Finite(registry, 2))  # it ends (as a failed source does) ...
    await record(recorder, Finite(registry, 3))  # ... and the supervisor starts it again
    rec = read_recording(folder)
    assert len(rec.bundles) == 5 and not rec.truncated
    assert (folder / "readings.csv").read_text().count("ts,stream,value,quality") == 1
    seqs = [line.split(",")[0] for line in (folder / "bundles.csv").read_text().splitlines()]
    assert seqs == ["seq", "0", "1", "2", "3", "4"]
