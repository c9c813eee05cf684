"""One gateway ingest process for the shared-subscription test (run as a script).

Runs an MqttSource on `$share/<group>/...`, prints 'ready' once subscribed, and
when no message has come for --idle seconds writes the (vehicle, ts) of every
fix it decoded to --out as JSON, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from gateway.bundle import Bundle
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.mqtt.client import MqttSettings
from gateway.streams import StreamRegistry


async def main(args: argparse.Namespace) -> None:
    registry = StreamRegistry()
    broker = MqttSettings(port=args.port, client_id=args.client_id, share_group=args.group)
    source = MqttSource(
        MqttSourceSettings(broker=broker, prefix=args.prefix, flush_ms=50), registry
    )
    rows: list[tuple[str, int]] = []
    last = time.monotonic()

    async def emit(bundle: Bundle) -> None:
        nonlocal last
        last = time.monotonic()
        names = registry.vehicles.names_of(bundle.fixes.vehicle)
        rows.extend(zip(map(str, names), map(int, bundle.fixes.ts), strict=True))

    task = asyncio.create_task(source.run(emit))
    while source.client is None or not source.client.connected.is_set():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the SUBACK
    print("ready", flush=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if rows and time.monotonic() - last > args.idle:
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with open(args.out, "w") as fh:
        json.dump({"rows": rows, "rejects": dict(source.stats.rejects)}, fh)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
