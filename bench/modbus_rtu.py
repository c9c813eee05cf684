"""Modbus RTU over a pty: achieved transactions/s against the theoretical rate
from frame time, at 9600, 19200 and 115200 baud.

A pty has no baud rate, so the simulator (`python -m firmware_sim.water --rtu
--baud B`, its own process) relays frames between two pty pairs and holds each
for its wire time: (chars + 3.5) x 10 bits / baud, half duplex. The theoretical
rate of one transaction is

    baud / (10 bits x (request chars + reply chars + 2 x 3.5 chars of silence))

For the pressure logger's planned read (fc 3, 6 registers): request 8 chars,
reply 5 + 12 = 17 chars, so 32 chars a transaction: 30/s at 9600 baud.

Same run, one at a time: a raw pymodbus serial client awaiting the same read
back to back, and ModbusSource polling the logger flat out (decode, meter
semantics, batches). Goal: gateway >= 0.8 of the theoretical rate.

Usage:
    python -m bench.modbus_rtu                       # 9600, 19200, 115200 baud; 5 s each
    python -m bench.modbus_rtu --bauds 19200 --seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import time

from pymodbus.client import AsyncModbusSerialClient

from gateway.bundle import Bundle
from gateway.drivers.modbus import DeviceSettings, LineSettings, ModbusSettings, ModbusSource
from gateway.drivers.modbus.profiles import default_profiles_dir
from gateway.streams import StreamRegistry

UNIT = 2  # dma-01/pz-1, the pressure logger
REQUEST_CHARS = 8  # unit, fc, address (2), count (2), crc (2)
REPLY_CHARS = 5 + 2 * 6  # unit, fc, byte count, 6 registers, crc (2)
BITS_PER_CHAR = 10  # 8N1: start + 8 data + stop


def theoretical(baud: int) -> float:
    chars = REQUEST_CHARS + REPLY_CHARS + 2 * 3.5
    return baud / (BITS_PER_CHAR * chars)


def stop_sim(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_sim(baud: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim.water", "--no-tcp", "--rtu", "--baud", str(baud)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("RTU on "):
            return proc, line.split()[2]
    raise RuntimeError("the simulator did not report its pty")


async def raw(port: str, baud: int, seconds: float) -> float:
    client = AsyncModbusSerialClient(port, baudrate=baud, parity="N", timeout=1, retries=0)
    await client.connect()
    done = 0
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:  # warm up
        await client.read_holding_registers(0, count=6, device_id=UNIT)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await client.read_holding_registers(0, count=6, device_id=UNIT)
        done += 1
    elapsed = time.perf_counter() - start
    client.close()
    return done / elapsed


async def gateway(port: str, baud: int, seconds: float) -> tuple[float, float]:
    settings = ModbusSettings(
        profiles_dir=str(default_profiles_dir()),
        lines=(LineSettings("rs485", kind="rtu", port=port, baudrate=baud, timeout=1.0),),
        devices=(
            DeviceSettings(
                "dma-01/pz-1", "rs485", "pressure-logger", unit_id=UNIT, interval=1e-6, jitter=0.0
            ),
        ),
    )
    source = ModbusSource(settings, StreamRegistry())

    async def emit(bundle: Bundle) -> None:
        pass

    task = asyncio.create_task(source.run(emit))
    await asyncio.sleep(0.5)
    lane = source.lanes[0]
    lane.utilisation()
    before, start = lane.transactions, time.perf_counter()
    await asyncio.sleep(seconds)
    count, elapsed = lane.transactions - before, time.perf_counter() - start
    utilisation = lane.utilisation()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    failed = sum(s.failed_polls for s in source.status())
    assert failed == 0, f"{failed} polls failed"
    return count / elapsed, utilisation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bauds", default="9600,19200,115200")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    print("Modbus RTU over a pty with wire-time emulation, fc 3 x 6 registers (32 chars a tx)")
    print(
        f"{'baud':>7} {'theory/s':>9} {'raw/s':>7} {'gw/s':>7} {'gw/theory':>9} "
        f"{'raw/theory':>10} {'line util':>9}"
    )
    for baud in (int(b) for b in args.bauds.split(",")):
        proc, port = start_sim(baud)
        try:
            raw_rate = asyncio.run(raw(port, baud, args.seconds))
            gw_rate, util = asyncio.run(gateway(port, baud, args.seconds))
        finally:
            stop_sim(proc)
        ideal = theoretical(baud)
        print(
            f"{baud:>7} {ideal:>9.1f} {raw_rate:>7.1f} {gw_rate:>7.1f} "
            f"{gw_rate / ideal:>9.2f} {raw_rate / ideal:>10.2f} {util:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
