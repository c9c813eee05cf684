"""The files of a recording (format version 1, docs/recording.md), as the writer makes them.

    RecordingFiles.bundle(seq, source, emitted_ns, bundle) --> bundles.csv, readings.csv,
                                                              fixes.csv, events.jsonl, rejects.jsonl
    RecordingFiles.raws(source, topics, payloads, times)   --> mqtt.csv
    RecordingFiles.manifest(...)                           --> manifest.json (atomic replace)

Used by the recorder's writer thread only, one at a time. Any OSError (a full
disk) goes to the caller, which stops the recording; `gateway.recording_replay`
reads these files back.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from numpy.typing import NDArray

from gateway.bundle import Bundle
from gateway.events import jsonable
from gateway.settings import Settings
from gateway.streams import StreamRegistry

FORMAT: Final = "gateway-recording"
VERSION: Final = 1
# file name -> header; each bundle's rows follow the ones before it, bundles.csv counts them
HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "bundles.csv": (
        "seq", "emitted_at", "source", "live", "readings", "fixes", "events", "rejects",
    ),
    "readings.csv": ("ts", "stream", "value", "quality"),
    "fixes.csv": ("ts", "vehicle", "lat", "lon", "speed_mps", "heading_deg", "fix"),
    "mqtt.csv": ("received_at", "source", "topic", "payload_b64"),
}  # fmt: skip
_CHUNK: Final = 8192  # rows formatted per write
_NEEDS_QUOTES: Final = re.compile(r'[,"\r\n]')


def iso(ns: NDArray[np.int64]) -> list[str]:
    """ns UTC as ISO 8601 with nanoseconds and the offset Z: exact both ways. Each
    distinct second is formatted once (numpy's per-row formatting is the slow part)."""
    sec, frac = np.divmod(ns, 1_000_000_000)
    seconds, which = np.unique(sec, return_inverse=True)
    heads = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s").tolist()
    return [f"{heads[i]}.{f:09d}Z" for i, f in zip(which.tolist(), frac.tolist(), strict=True)]


def iso1(ns: int) -> str:
    return iso(np.asarray([ns], np.int64))[0]


def _quoted(name: str) -> str:
    """A name as one CSV field (stream names never need quotes; other names might)."""
    if _NEEDS_QUOTES.search(name):
        return '"' + name.replace('"', '""') + '"'
    return name


@dataclasses.dataclass(slots=True)
class RecorderStats:
    bundles: int = 0
    readings: int = 0
    fixes: int = 0
    events: int = 0
    rejects: int = 0
    mqtt: int = 0
    dropped: int = 0  # bundles and raw messages not recorded: the writer was behind
    first_ts: int | None = None  # data time span of readings, fixes and events
    last_ts: int | None = None


class RecordingFiles:
    """The open files of one recording; appends, so a restarted writer goes on."""

    def __init__(self, directory: Path, registry: StreamRegistry, stats: RecorderStats) -> None:
        self.directory = directory
        self.registry = registry
        self.stats = stats
        self._files: dict[str, IO[str]] = {}

    def flush(self) -> None:
        for fh in self._files.values():
            fh.flush()

    def close(self) -> None:
        """Close every file; the first OSError (a full disk) is raised once all are closed."""
        files, self._files = self._files, {}
        failed: OSError | None = None
        for fh in files.values():
            try:
                fh.close()
            except OSError as err:
                failed = failed or err
        if failed is not None:
            raise failed

    def _file(self, name: str) -> IO[str]:
        fh = self._files.get(name)
        if fh is None:
            path = self.directory / name
            fh = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - held open
            self._files[name] = fh
            if name in HEADERS and fh.tell() == 0:
                csv.writer(fh, lineterminator="\n").writerow(HEADERS[name])
        return fh

    def _span(self, ts: NDArray[np.int64]) -> None:
        if not len(ts):
            return
        lo, hi = int(ts.min()), int(ts.max())
        s = self.stats
        s.first_ts = lo if s.first_ts is None else min(s.first_ts, lo)
        s.last_ts = hi if s.last_ts is None else max(s.last_ts, hi)

    def bundle(self, seq: int, source: str, emitted: int, bundle: Bundle) -> None:
        """One bundle's rows, then its line in bundles.csv (which counts them)."""
        r, f = bundle.readings, bundle.fixes
        # f-strings over columns, a chunk at a time: about twice as fast as csv.writer,
        # and the loop gives the GIL back to the event loop between rows
        for lo in range(0, len(r), _CHUNK):
            part = r[lo : lo + _CHUNK]
            names = {int(i): _quoted(self.registry.name_of(int(i))) for i in np.unique(part.stream)}
            rows = zip(
                iso(part.ts),
                part.stream.tolist(),
                part.value.tolist(),
                part.quality.tolist(),
                strict=True,
            )
            self._file("readings.csv").write(
                "".join([f"{t},{names[i]},{v!r},{q}\n" for t, i, v, q in rows])
            )
            self._span(part.ts)
        vehicles = self.registry.vehicles
        for lo in range(0, len(f), _CHUNK):
            chunk = f[lo : lo + _CHUNK]
            ids = {int(i): _quoted(vehicles.name_of(int(i))) for i in np.unique(chunk.vehicle)}
            cols = zip(
                iso(chunk.ts),
                chunk.vehicle.tolist(),
                chunk.lat.tolist(),
                chunk.lon.tolist(),
                chunk.speed.tolist(),
                chunk.heading.tolist(),
                chunk.fix.tolist(),
                strict=True,
            )
            self._file("fixes.csv").write(
                "".join(
                    [
                        f"{t},{ids[v]},{la!r},{ln!r},{sp!r},{hd!r},{fx}\n"
                        for t, v, la, ln, sp, hd, fx in cols
                    ]
                )
            )
            self._span(chunk.ts)
        if bundle.events:
            fh = self._file("events.jsonl")
            for e in bundle.events:
                out = jsonable(e.to_dict())
                out["ts"] = iso1(e.ts)
                fh.write(json.dumps(out, sort_keys=True) + "\n")
            self._span(np.asarray([e.ts for e in bundle.events], np.int64))
        if bundle.rejects:
            fh = self._file("rejects.jsonl")
            for j in bundle.rejects:
                payload = base64.b64encode(j.payload).decode()
                line = {"ts": iso1(j.ts), "source": j.source, "reason": j.reason}
                fh.write(json.dumps({**line, "detail": j.detail, "payload_b64": payload}) + "\n")
        counts = (len(r), len(f), len(bundle.events), len(bundle.rejects))
        row = (seq, iso1(emitted), _quoted(source), int(bundle.live), *counts)
        self._file("bundles.csv").write(",".join(map(str, row)) + "\n")
        s = self.stats
        s.bundles += 1
        s.readings, s.fixes = s.readings + counts[0], s.fixes + counts[1]
        s.events, s.rejects = s.events + counts[2], s.rejects + counts[3]

    def raws(self, source: str, topics: list[str], payloads: list[bytes], at: list[int]) -> None:
        """Raw MQTT messages of one source, as received."""
        when = iso(np.asarray(at, np.int64))
        field = _quoted(source)
        self._file("mqtt.csv").write(
            "".join(
                [
                    f"{t},{field},{_quoted(topic)},{base64.b64encode(p).decode()}\n"
                    for t, topic, p in zip(when, topics, payloads, strict=True)
                ]
            )
        )
        self.stats.mqtt += len(topics)

    def manifest(self, settings: Settings, started_at: int, config: bool, stopped: str) -> None:
        """Rewrite manifest.json (a new file, then a rename: never half written)."""
        s = self.stats
        span = None
        if s.first_ts is not None and s.last_ts is not None:
            span = {"from": iso1(s.first_ts), "to": iso1(s.last_ts)}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "gateway_id": settings.gateway.id,
            "recorded": {"from": iso1(started_at), "to": iso1(time.time_ns())},
            "data_span": span,
            "config": "config.toml" if config else None,
            "sources": [
                {
                    "name": p.name,
                    "type": p.type,
                    "settings": jsonable(dataclasses.asdict(p.settings)),
                }
                for p in settings.sources
            ],
            "streams": [
                {"name": i.name, "unit": i.unit, "kind": i.kind} for i in list(self.registry)
            ],
            "counts": {
                k: getattr(s, k) for k in ("bundles", "readings", "fixes", "events", "rejects")
            }
            | {"mqtt": s.mqtt, "dropped": s.dropped},
            "stopped": stopped or None,
        }
        tmp = self.directory / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.directory / "manifest.json")
