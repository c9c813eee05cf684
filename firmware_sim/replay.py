"""`gateway sim replay DIR`: a recording's raw MQTT messages back on the wire.

    DIR/mqtt.csv (received_at, source, topic, payload_b64) --paced by received_at / N-->
        BusPublisher --QoS 1--> broker --> a second gateway, as if the field sent it again

The payloads go out byte for byte as the first gateway received them, with their
original spacing scaled by `--speed` (0: flat out), so a second gateway stores the
same fixes. The timestamps inside the payloads are the field's: a gateway refuses
them if they are older than its `history_window_s` (7 days by default). This reads
the file format of docs/recording.md itself, so the simulator does not lean on the
gateway's reader.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import dataclasses
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from gateway.helptext import HelpFormatter

HEADER = ["received_at", "source", "topic", "payload_b64"]


class RecordingFileError(ValueError):
    """mqtt.csv is missing or damaged."""


@dataclasses.dataclass(frozen=True, slots=True)
class RawMessage:
    received_ns: int
    source: str
    topic: str
    payload: bytes


def read_mqtt(directory: Path, *, source: str = "") -> Iterator[RawMessage]:
    """The raw messages of a recording in the order received (of one source if named),
    streamed; the header is checked at once, a bad line raises when it is reached."""
    path = directory / "mqtt.csv"
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed by _messages
    except FileNotFoundError as err:
        raise RecordingFileError(
            f"{path} is missing: the recording has no raw MQTT (was an MQTT source recorded?)"
        ) from err
    # a last line without its newline was cut short (a kill, a full disk): not read
    rows = csv.reader(line for line in fh if line.endswith("\n"))
    if next(rows, None) != HEADER:
        fh.close()
        raise RecordingFileError(f"{path}: line 1: header must be {','.join(HEADER)}")
    return _messages(fh, rows, path, source)


def _messages(
    fh: IO[str], rows: Iterator[list[str]], path: Path, source: str
) -> Iterator[RawMessage]:
    with fh:
        for n, row in enumerate(rows, 2):
            if len(row) != len(HEADER):
                raise RecordingFileError(f"{path}: line {n}: {len(row)} fields, not {len(HEADER)}")
            at, src, topic, b64 = row
            if source and src != source:
                continue
            try:
                ns = int(np.datetime64(at.removesuffix("Z"), "ns").astype(np.int64))
                payload = base64.b64decode(b64, validate=True)
            except (ValueError, binascii.Error) as err:
                raise RecordingFileError(f"{path}: line {n}: {err}") from err
            yield RawMessage(ns, src, topic, payload)


def retarget(topic: str, prefix: str) -> str:
    """The topic under another prefix: its first level replaced."""
    return prefix + "/" + topic.partition("/")[2] if prefix else topic


def replay(
    messages: Iterable[RawMessage],
    publish: Callable[[str, bytes], object],
    *,
    speed: float,
    prefix: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Publish each message at its recorded offset divided by `speed` (0: no waiting)."""
    n = 0
    wall0 = clock()
    t0: int | None = None
    for m in messages:
        if t0 is None:
            t0 = m.received_ns
        if speed > 0:
            delay = wall0 + (m.received_ns - t0) / 1e9 / speed - clock()
            if delay > 0:
                sleep(delay)
        publish(retarget(m.topic, prefix), m.payload)
        n += 1
    return n


def run_replay(args: argparse.Namespace) -> int:
    # paho is imported here, not at the top: `gateway --help` stays light
    from firmware_sim.buses.fleet import Message  # noqa: PLC0415
    from firmware_sim.buses.publisher import BrokerTarget, BusPublisher  # noqa: PLC0415

    if args.speed < 0:
        print("gateway sim replay: --speed must be 0 (flat out) or more", file=sys.stderr)
        return 2
    try:
        messages = read_mqtt(Path(args.directory), source=args.source)
    except RecordingFileError as err:
        print(f"gateway sim replay: {err}", file=sys.stderr)
        return 2
    target = BrokerTarget(
        args.host,
        args.port,
        username=args.username,
        password_env=args.password_env,
        ca_file=args.ca_file,
    )
    publisher = BusPublisher(target)
    try:
        publisher.start()
    except ConnectionError as err:
        print(f"gateway sim replay: {err}", file=sys.stderr)
        return 1
    sent = 0

    def publish(topic: str, payload: bytes) -> None:
        nonlocal sent
        sent += publisher.publish([Message(topic, payload, args.qos)])

    try:
        replay(messages, publish, speed=args.speed, prefix=args.prefix)
    except RecordingFileError as err:
        print(f"gateway sim replay: {err}; stopped after {sent} messages", file=sys.stderr)
        return 2
    finally:
        acked = publisher.flush()
        publisher.close()
    print(f"replayed {sent} messages to {args.host}:{args.port}")
    if not acked:
        print("gateway sim replay: the broker did not acknowledge every message", file=sys.stderr)
        return 1
    return 0


EXAMPLES = """\
examples:
  gateway sim replay var/rec-0412                 as recorded, in real time
  gateway sim replay var/rec-0412 --speed 10      ten times faster
  gateway sim replay var/rec-0412 --speed 0 --prefix staging --port 1884
                                                  flat out, as staging/v1/..., to a test broker
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gateway sim replay`."""
    p = sub.add_parser(
        "replay",
        help="put a recording's raw MQTT messages back on the wire",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("directory", metavar="DIR", help="a `gateway run --record` folder")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="recorded seconds per real second; 0: flat out (default: %(default)s)",
    )
    p.add_argument("--host", default="127.0.0.1", help="broker (default: %(default)s)")
    p.add_argument("--port", type=int, default=1883, help="(default: %(default)s)")
    p.add_argument("--prefix", default="", help="publish under this topic prefix instead")
    p.add_argument("--source", default="", help="only the messages of this recorded source")
    p.add_argument("--qos", type=int, choices=[0, 1], default=1, help="(default: %(default)s)")
    p.add_argument("--username", default=None)
    p.add_argument("--password-env", default=None, help="env var holding the password")
    p.add_argument("--ca-file", default=None, help="CA bundle: connect with TLS")
    p.set_defaults(func=run_replay)
