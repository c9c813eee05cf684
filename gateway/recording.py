"""`gateway run --record DIR`: everything the sources emit, on disk as CSV and JSON Lines.

    Source.run(emit) --RecordedSource: tap(bundle), then emit--> the runtime, untouched
    MqttSource.handle --Wiring.on_raw(topic, payload, received_ns)--> raw_tap(source)
         |                                                                |
         +------------- deques, bounded in bytes, no lock ----------------+
                                     | every `flush_s`, in a thread of its own
                                     v
    RecordingFiles: DIR/bundles.csv readings.csv fixes.csv events.jsonl rejects.jsonl
                        mqtt.csv manifest.json (gateway.recording_files)

The taps on the event loop only append a reference to an immutable bundle (or the raw
bytes) to a deque; formatting and writing happen in the writer thread. Ingest never
waits for the disk: past `max_pending_bytes` in memory a tap drops what it is given
and counts it, and once the disk is full (ENOSPC, or less than `min_free_bytes` left
for the outbox on the same disk) the recording stops for good with one log line,
while the gateway goes on. The format is documented in docs/recording.md; its
reader is `gateway.recording_replay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from gateway.bundle import Bundle
from gateway.logs import get_logger
from gateway.parts import Emit, Source
from gateway.recording_files import RecorderStats, RecordingFiles
from gateway.settings import Settings
from gateway.streams import StreamRegistry

log = get_logger("gateway.recording")

_OVERHEAD: Final = 64  # bytes counted per item besides its data


class _Lane:
    """One source's raw messages waiting for the writer, as three columns: the tap then
    allocates no tuple, which the garbage collector would scan (it cost a quarter of
    the hot path's CPU in `python -m bench.recording`)."""

    __slots__ = ("payloads", "times", "topics")

    def __init__(self) -> None:
        self.topics: deque[str] = deque()
        self.payloads: deque[bytes] = deque()
        self.times: deque[int] = deque()  # appended last: len(times) rows are complete

    def take(self) -> tuple[list[str], list[bytes], list[int]]:
        n = len(self.times)
        return (
            [self.topics.popleft() for _ in range(n)],
            [self.payloads.popleft() for _ in range(n)],
            [self.times.popleft() for _ in range(n)],
        )

    def clear(self) -> None:
        for column in (self.topics, self.payloads, self.times):
            column.clear()


RawTap = Callable[[str, bytes, int], None]


class RecordingError(ValueError):
    """The recording folder cannot be used (not empty, not writable)."""


_Tapped = tuple[int, str, int, Bundle]  # seq, source, emitted ns, bundle


class Recorder:
    """Writes what the sources emit into `directory` (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        registry: StreamRegistry,
        settings: Settings,
        *,
        config_file: str = "",
        flush_s: float = 1.0,
        max_pending_bytes: int = 64 * 1024 * 1024,
        min_free_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        if directory.is_file() or (directory.is_dir() and any(directory.iterdir())):
            raise RecordingError(f"{directory} is not an empty folder; record into a new one")
        self.directory = directory
        self.registry = registry
        self.settings = settings
        self.flush_s = flush_s
        self.max_pending_bytes = max_pending_bytes
        self.min_free_bytes = min_free_bytes
        self.stats = RecorderStats()
        self.stopped = ""  # why the recording stopped early, once it has
        self.started_at = time.time_ns()
        self._config_file = config_file if config_file and Path(config_file).is_file() else ""
        # deques: append (the loop) and popleft (the writer) need no lock. Bytes taken in
        # and written out are each counted by one thread only, so neither races
        self._bundles: deque[_Tapped] = deque()
        self._lanes: dict[str, _Lane] = {}
        self._bytes_in = 0
        self._bytes_out = 0
        self._seq = 0
        self._users = 0
        self._started = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._ending: threading.Thread | None = None  # the writer last stopped
        self._files = RecordingFiles(directory, registry, self.stats)

    # -- the taps (event loop) ------------------------------------------------------------

    def wrap(self, sources: Sequence[Source]) -> list[Source]:
        return [RecordedSource(s, self) for s in sources]

    def raw_tap(self, source: str) -> RawTap:
        """The `Wiring.on_raw` callback of one source: a raw message as received."""
        lane = self._lanes.setdefault(source, _Lane())
        topics, payloads, times = lane.topics.append, lane.payloads.append, lane.times.append
        limit = self.max_pending_bytes

        def tap(topic: str, payload: bytes, received_ns: int) -> None:
            # once per message on the event loop: inlined, no call but the append
            if self.stopped:
                return
            n = len(payload) + len(topic) + _OVERHEAD
            if self._bytes_in - self._bytes_out + n > limit:
                self.stats.dropped += 1
                return
            self._bytes_in += n
            topics(topic)
            payloads(payload)
            times(received_ns)

        return tap

    def tap(self, source: str, bundle: Bundle) -> None:
        seq = self._seq
        self._seq += 1
        if self._room(bundle.nbytes + _OVERHEAD):
            self._bundles.append((seq, source, time.time_ns(), bundle))

    def _room(self, nbytes: int) -> bool:
        """Count `nbytes` in, or say no: stopped, or the writer is that far behind."""
        if self.stopped:
            return False
        if self._bytes_in - self._bytes_out + nbytes > self.max_pending_bytes:
            self.stats.dropped += 1
            return False
        self._bytes_in += nbytes
        return True

    # -- lifetime: from the first source's start to the last one's end ----------------------

    def _start(self) -> None:
        """Make the folder, copy the config, write a first manifest: at the first start,
        so that a config error found after `build` leaves no folder behind."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._config_file:
                shutil.copyfile(self._config_file, self.directory / "config.toml")
            self._write_manifest()
        except OSError as err:
            self._stop(f"cannot write {self.directory}: {err.strerror or err}")

    def attach(self) -> None:
        if not self._started:
            self._started = True
            self._start()
        self._users += 1
        if self._thread is None and not self.stopped:
            if self._ending is not None:
                self._ending.join()  # a source restarted while the last writer was finishing
            self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
            self._thread.start()

    def detach(self) -> threading.Thread | None:
        """Called as a source ends; the last one out stops the writer, which writes what
        is left: join the thread it returns (off the loop)."""
        self._users -= 1
        if self._users or self._thread is None:
            return None
        thread, self._thread = self._thread, None
        self._ending = thread
        self._wake.set()
        return thread

    def _loop(self) -> None:
        me = threading.current_thread()
        while self._thread is me:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self._flush()
        self._flush()
        try:
            self._files.close()
        except OSError as err:  # the last buffered lines did not fit
            self._stop(f"{err.strerror or err} ({type(err).__name__})")

    # -- the writer thread ------------------------------------------------------------------

    def _flush(self) -> None:
        bundles = [self._bundles.popleft() for _ in range(len(self._bundles))]
        raws = {source: lane.take() for source, lane in self._lanes.items()}
        self._bytes_out += sum(b[3].nbytes + _OVERHEAD for b in bundles)
        for topics, payloads, _ in raws.values():
            self._bytes_out += sum(map(len, topics)) + sum(map(len, payloads))
            self._bytes_out += _OVERHEAD * len(topics)
        if self.stopped:
            return
        try:
            free = shutil.disk_usage(self.directory).free
            if free < self.min_free_bytes:
                self._stop(f"less than {self.min_free_bytes} bytes free on the disk")
                return
            for tapped in bundles:
                self._files.bundle(*tapped)
            for source, (topics, payloads, at) in raws.items():
                if topics:
                    self._files.raws(source, topics, payloads, at)
            self._files.flush()
            self._write_manifest()
        except OSError as err:  # ENOSPC, EDQUOT, EIO: the disk is full or failing
            self._stop(f"{err.strerror or err} ({type(err).__name__})")

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        self._bundles.clear()
        for lane in self._lanes.values():
            lane.clear()
        log.error(
            "recording.stopped",
            directory=str(self.directory),
            reason=reason,
            bundles=self.stats.bundles,
            remedy="the gateway goes on without recording; free space and record anew",
        )
        # what did not fit is lost: the recording is cut short, as logged
        with contextlib.suppress(OSError):
            self._files.close()
        with contextlib.suppress(OSError):  # no room even for the manifest: the log says why
            self._write_manifest()

    def _write_manifest(self) -> None:
        self._files.manifest(self.settings, self.started_at, bool(self._config_file), self.stopped)


class RecordedSource:
    """A source whose every bundle the recorder sees before the runtime does."""

    def __init__(self, source: Source, recorder: Recorder) -> None:
        self.source = source
        self.name = source.name
        self.recorder = recorder

    async def run(self, emit: Emit) -> None:
        recorder, name = self.recorder, self.name

        async def recorded(bundle: Bundle) -> None:
            recorder.tap(name, bundle)
            await emit(bundle)

        recorder.attach()
        try:
            await self.source.run(recorded)
        finally:
            writer = recorder.detach()
            if writer is not None:
                await asyncio.to_thread(writer.join)
