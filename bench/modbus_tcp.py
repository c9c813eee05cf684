"""Modbus TCP polling: requests/s and registers/s, ModbusSource against a raw
pymodbus client loop doing the same reads, in the same run.

The simulated water network runs in its own process (`python -m
firmware_sim.water`), one pymodbus TCP server per meter on loopback. In this
process, one at a time, alternating for `--rounds`:

- raw: per meter, one AsyncModbusTcpClient awaiting the meter's planned reads
  back to back (the inlet meter: fc 4 0+12; the pressure logger: fc 3 0+6),
  counting replies. Nothing is decoded.
- gateway: ModbusSource polling the same meters flat out (interval 1 µs, no
  jitter): the same requests, plus decoding, meter semantics, ReadingBatch
  building and an emit that counts rows.

Each pair runs with 1 meter (one connection) and with `--meters` meters (one
connection each, concurrent). The ratio is gateway / raw; the goal is >= 0.8.

Usage:
    python -m bench.modbus_tcp                     # 1 and 20 meters, 5 s x 3 rounds
    python -m bench.modbus_tcp --meters 50 --seconds 3 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import statistics
import subprocess
import sys
import time
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from gateway.bundle import Bundle
from gateway.drivers.modbus import DeviceSettings, LineSettings, ModbusSettings, ModbusSource
from gateway.drivers.modbus.plan import Request, plan_requests
from gateway.drivers.modbus.profiles import default_profiles_dir, load_profiles
from gateway.streams import StreamRegistry


@dataclasses.dataclass(frozen=True)
class Meter:
    name: str
    unit: int
    port: int
    profile: str


def stop_sim(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_sim(meters: int) -> tuple[subprocess.Popen[str], list[Meter]]:
    dmas = (meters + 1) // 2
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.water", "--dmas", str(dmas), "--port-base", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    found: list[Meter] = []
    header = proc.stdout.readline()
    assert header.startswith("device"), header
    for _ in range(2 * dmas):
        name, unit, port, profile = proc.stdout.readline().split()
        found.append(Meter(name, int(unit), int(port), profile))
    return proc, found[:meters]


def plans(meters: list[Meter]) -> dict[str, tuple[Request, ...]]:
    profiles = load_profiles(default_profiles_dir())
    return {
        m.name: plan_requests(
            [p for p in profiles[m.profile].points if p.role != "info"],  # as the source polls
            merge=profiles[m.profile].merge_requests,
            max_gap=profiles[m.profile].max_gap,
        )
        for m in meters
    }


async def raw(meters: list[Meter], seconds: float) -> tuple[int, int, float]:
    plan = plans(meters)
    counts = [0, 0]
    stop = asyncio.Event()

    async def loop(m: Meter) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=m.port, timeout=2, retries=0)
        await client.connect()
        readers = {3: client.read_holding_registers, 4: client.read_input_registers}
        try:
            while not stop.is_set():
                for r in plan[m.name]:
                    await readers[r.fc](r.address, count=r.count, device_id=m.unit)
                    counts[0] += 1
                    counts[1] += r.count
        finally:
            client.close()

    tasks = [asyncio.create_task(loop(m)) for m in meters]
    await asyncio.sleep(0.3)  # connected and warm
    base = list(counts)
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    done = list(counts)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    stop.set()
    await asyncio.gather(*tasks)
    reqs = done[0] - base[0]
    return round(reqs / elapsed), round((done[1] - base[1]) / elapsed), cpu / reqs * 1e6


async def gateway(meters: list[Meter], seconds: float) -> tuple[int, int, float]:
    plan = plans(meters)
    settings = ModbusSettings(
        profiles_dir=str(default_profiles_dir()),
        lines=(LineSettings("lan", timeout=2.0),),
        devices=tuple(
            DeviceSettings(
                m.name, "lan", m.profile, unit_id=m.unit, tcp_port=m.port, interval=1e-6, jitter=0.0
            )
            for m in meters
        ),
    )
    source = ModbusSource(settings, StreamRegistry())
    rows = [0]

    async def emit(bundle: Bundle) -> None:
        rows[0] += len(bundle.readings)

    task = asyncio.create_task(source.run(emit))
    await asyncio.sleep(0.3)

    def totals() -> tuple[int, int]:
        reqs = sum(lane.transactions for lane in source.lanes)
        regs = sum(s.polls * sum(r.count for r in plan[s.name]) for s in source.status())
        return reqs, regs

    base = totals()
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    done = totals()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    failed = sum(s.failed_polls for s in source.status())
    assert failed == 0, f"{failed} polls failed"
    reqs = done[0] - base[0]
    return round(reqs / elapsed), round((done[1] - base[1]) / elapsed), cpu / reqs * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    print("Modbus TCP polling, loopback, simulator in its own process (median of rounds)")
    print(f"{'meters':>6} {'who':>8} {'req/s':>8} {'reg/s':>9} {'ratio':>6} {'cpu us/req':>10}")
    for n in sorted({1, args.meters}):
        proc, meters = start_sim(n)
        try:
            results: dict[str, list[tuple[int, int, float]]] = {"raw": [], "gateway": []}
            for _ in range(args.rounds):
                results["raw"].append(asyncio.run(raw(meters, args.seconds)))
                results["gateway"].append(asyncio.run(gateway(meters, args.seconds)))
        finally:
            stop_sim(proc)
        med: dict[str, Any] = {
            who: tuple(statistics.median(r[i] for r in rs) for i in range(3))
            for who, rs in results.items()
        }
        for who in ("raw", "gateway"):
            req, reg, cpu = med[who]
            ratio = req / med["raw"][0]
            print(f"{n:>6} {who:>8} {req:>8.0f} {reg:>9.0f} {ratio:>6.2f} {cpu:>10.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
