"""AIS-140 over TCP: packets/s through Ais140Source against a raw asyncio reader, and
2,000 units connected at once with the memory each costs.

A sender process (so that it does not share this process's GIL) opens `--conns`
connections and writes, on each, the same pre-encoded packets (`--packets` per
connection, ROADRPA, Teltonika, CTPL and numbered-format shapes in turn, each
ended by \\r\\n) as fast as TCP takes them. In this process, one at a time,
alternating for `--rounds`:

- raw: an asyncio server whose handler does `reader.readuntil(b"\\n")` per packet and
  counts: framing by line ends, no decoding. The ceiling for a Python asyncio reader.
- gateway: `Ais140Source` (rate limits set out of the way): the Framer, the parser,
  IMEI mapping, the Accumulator, bundles emitted to an emit that counts fixes.

Rate = packets / (the last packet decoded - the go to the sender, whose connections
and packets are ready by then); the gateway's fixes are then checked to have all
been emitted. CPU is this process's user+system time per packet over the same span
(the sender's process has the other core).

Hold: `--hold` units (default 2,000) connect, log in and send one location each,
then stay connected. In a fresh process for each server, its RSS is read (after
a gc) before they connect and once every unit's location was decoded: the
difference per connection, for the raw server (an asyncio stream and its task)
and for the gateway (its protocol, framer, buckets and the unit's streams).

Usage:
    python -m bench.ais140_tcp              # 1 and 50 connections x 2,000 packets, 3 rounds
    python -m bench.ais140_tcp --packets 500 --rounds 1 --hold 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import logging
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from firmware_sim.ais140 import encoder
from gateway.bundle import Bundle
from gateway.drivers.ais140.settings import Ais140SourceSettings
from gateway.drivers.ais140.source import Ais140Source
from gateway.streams import StreamRegistry

SHAPES = ("roadrpa", "teltonika", "ctpl", "xyz123")


def imei(n: int) -> str:
    return f"86999{n:010d}"


def blob(conn: int, packets: int) -> bytes:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out = bytearray()
    for k in range(packets):
        fix = encoder.Fix(imei(conn), f"MH12PM{conn:04d}", now, 18.5 + k * 1e-5, 73.85,
                          30.0, 90.0, k % 999_999 + 1)  # fmt: skip
        out += encoder.location(SHAPES[k % len(SHAPES)], fix) + b"\r\n"
    return bytes(out)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_s() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


# -- the sender process --------------------------------------------------------------


def _sender(port: int, conns: int, packets: int, hold: bool, pipe: Connection) -> None:
    async def one(n: int, release: asyncio.Event) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        if hold:
            writer.write(encoder.login("roadrpa", imei(n), f"MH12PM{n:04d}") + b"\r\n")
        writer.write(blobs[n % len(blobs)] if not hold else blob(n, 1))
        await writer.drain()
        await release.wait()
        writer.close()

    async def main() -> None:
        release = asyncio.Event()
        if not hold:
            release.set()
        async with asyncio.TaskGroup() as tg:
            for n in range(conns):
                tg.create_task(one(n, release))
                if hold and n % 100 == 99:
                    await asyncio.sleep(0.05)  # the accept backlog is 100
            if hold:
                await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
                release.set()

    blobs = [] if hold else [blob(n, packets) for n in range(min(conns, 8))]
    pipe.send("ready")
    pipe.recv()
    asyncio.run(main())


def start_sender(port: int, conns: int, packets: int, hold: bool) -> tuple[mp.Process, Connection]:
    ours, theirs = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(
        target=_sender, args=(port, conns, packets, hold, theirs), daemon=True
    )
    proc.start()
    assert ours.recv() == "ready"
    return proc, ours


# -- the two receivers ---------------------------------------------------------------


class Raw:
    def __init__(self) -> None:
        self.count = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await reader.readuntil(b"\n")
                self.count += 1
        writer.close()
        self.connections -= 1


async def run_raw(conns: int, packets: int) -> tuple[float, float]:
    raw = Raw()
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proc, pipe = start_sender(port, conns, packets, False)
    total = conns * packets
    first, cpu0 = time.perf_counter(), cpu_s()
    pipe.send("go")
    while raw.count < total:
        await asyncio.sleep(0.001)
    took = time.perf_counter() - first
    cpu = cpu_s() - cpu0
    server.close()
    proc.join(10)
    return total / took, cpu / total * 1e6


def gateway_source(conns: int) -> Ais140Source:
    settings = Ais140SourceSettings(
        host="127.0.0.1",
        port=0,
        vehicles={imei(n): f"MH12-PM-{n:04d}" for n in range(conns)},
        max_connections=conns + 100,
        max_bytes_per_s=1e12,
        max_packets_per_s=1e9,
        history_window_s=1e9,
    )
    return Ais140Source(settings, StreamRegistry())


async def serving(source: Ais140Source, emit: Callable[[Bundle], object]) -> asyncio.Task[None]:
    async def counted(bundle: Bundle) -> None:
        emit(bundle)

    task = asyncio.create_task(source.run(counted))
    await source.listening.wait()
    return task


async def run_gateway(conns: int, packets: int) -> tuple[float, float]:
    source = gateway_source(conns)
    fixes = [0]
    task = await serving(source, lambda b: fixes.__setitem__(0, fixes[0] + len(b.fixes)))
    assert source.address is not None
    proc, pipe = start_sender(source.address[1], conns, packets, False)
    total = conns * packets
    first, cpu0 = time.perf_counter(), cpu_s()
    pipe.send("go")
    while source.stats.packets < total:
        await asyncio.sleep(0.001)
    took = time.perf_counter() - first
    cpu = cpu_s() - cpu0
    while fixes[0] < total:  # and every fix was emitted (within flush_ms)
        await asyncio.sleep(0.01)
    assert not source.stats.rejects, source.stats.rejects
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    proc.join(10)
    return total / took, cpu / total * 1e6


def _hold_child(units: int, gateway: bool, pipe: Connection) -> None:
    logging.disable(logging.INFO)
    pipe.send(asyncio.run(hold(units, gateway)))


def hold_in_fresh_process(units: int, gateway: bool) -> float:
    """`hold` in a process of its own, so that nothing measured before moves its RSS."""
    ours, theirs = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=_hold_child, args=(units, gateway, theirs))
    proc.start()
    kib: float = ours.recv()
    proc.join(30)
    return kib


async def hold(units: int, gateway: bool) -> float:
    """KiB of server RSS per connected unit."""
    source = gateway_source(units)
    raw = Raw()
    if gateway:
        task = await serving(source, lambda b: None)
        assert source.address is not None
        port = source.address[1]
    else:
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    await asyncio.sleep(0.2)
    gc.collect()
    before = rss_kib()
    proc, pipe = start_sender(port, units, 1, True)
    pipe.send("go")
    async with asyncio.timeout(120):
        if gateway:
            while source.stats.packets < 2 * units:
                await asyncio.sleep(0.05)
        else:
            while raw.count < 2 * units:
                await asyncio.sleep(0.05)
    gc.collect()
    after = rss_kib()
    pipe.send("close")
    proc.join(30)
    async with asyncio.timeout(30):
        while raw.connections or source.stats.connections:
            await asyncio.sleep(0.05)
    if gateway:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    else:
        server.close()
    return (after - before) / units


async def main(args: argparse.Namespace) -> None:
    logging.disable(logging.INFO)
    print(f"{'conns':>6} {'who':>8} {'packets/s':>10} {'ratio':>6} {'cpu us/pkt':>10}")
    for conns in args.conns:
        rates: dict[str, list[float]] = {"raw": [], "gateway": []}
        cpus: dict[str, list[float]] = {"raw": [], "gateway": []}
        for _ in range(args.rounds):
            for who, run in (("raw", run_raw), ("gateway", run_gateway)):
                rate, cpu = await run(conns, args.packets)
                rates[who].append(rate)
                cpus[who].append(cpu)
        base = statistics.median(rates["raw"])
        for who in ("raw", "gateway"):
            rate = statistics.median(rates[who])
            cpu = statistics.median(cpus[who])
            print(f"{conns:>6} {who:>8} {rate:>10.0f} {rate / base:>6.3f} {cpu:>10.1f}")
    if args.hold:
        for _ in range(args.rounds):
            raw_kib = hold_in_fresh_process(args.hold, gateway=False)
            gw_kib = hold_in_fresh_process(args.hold, gateway=True)
            print(f"held {args.hold}: KiB RSS each: raw {raw_kib:.1f}, gateway {gw_kib:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--packets", type=int, default=2000, help="per connection")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=int, default=2000, help="units held connected; 0: skip")
    asyncio.run(main(parser.parse_args()))
