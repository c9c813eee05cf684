"""`gateway sim ais140`: simulated AIS-140 units connecting to a gateway over TCP."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

from firmware_sim.ais140 import encoder
from firmware_sim.ais140.units import FAULT_KINDS, Fault, UnitsSettings, run_units, vehicles
from gateway.helptext import HelpFormatter

EXAMPLES = (
    """\
examples:
  gateway sim ais140 --devices 50                    50 units, every vendor shape, to :5027
  gateway sim ais140 --devices 4 --print-config      the [ais140.vehicles] table they need
  gateway sim ais140 --devices 10 --period 2 --fault split:0:0:600 --fault batch:1:0:600
                                                     split and batched frames
  gateway sim ais140 --devices 5 --fault panic:2:30:10 --fault history:3:20:60
                                                     a panic, and a unit out of coverage
  gateway sim ais140 --devices 3 --fault noise:0:0:60 --fault bad_checksum:1:0:60
  gateway sim ais140 --shape roadrpa --shape teltonika --devices 2000 --period 30

shapes: """
    + ", ".join(encoder.SHAPES)
    + "\nfault kinds: "
    + ", ".join(FAULT_KINDS)
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "ais140",
        help="simulated AIS-140 tracking units connecting over TCP",
        description="Simulated AIS-140 tracking units: each connects to the gateway over TCP, "
        "logs in and sends location and health packets in a vendor's shape (its own encoder, "
        "not the driver's), with faults on demand. Deterministic for a seed.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=10, help="units (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="the gateway's AIS-140 listener")
    parser.add_argument("--port", type=int, default=5027)
    parser.add_argument("--period", type=float, default=10.0, help="seconds between fixes")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="seconds between health")
    parser.add_argument(
        "--shape", action="append", choices=list(encoder.SHAPES), help="vendor shapes (default all)"
    )
    parser.add_argument(
        "--fault", action="append", default=[], metavar="KIND:UNIT:AT[:DUR]", help="inject a fault"
    )
    parser.add_argument("--duration", type=float, default=0.0, help="seconds; 0: until Ctrl-C")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same IMEIs and phases")
    parser.add_argument(
        "--print-config", action="store_true", help="print [ais140.vehicles] and exit"
    )
    parser.set_defaults(func=run_ais140)


def run_ais140(args: argparse.Namespace) -> int:
    try:
        settings = UnitsSettings(
            host=args.host,
            port=args.port,
            devices=args.devices,
            period_s=args.period,
            heartbeat_s=args.heartbeat,
            seed=args.seed,
            shapes=tuple(args.shape or encoder.SHAPES),
            faults=tuple(Fault.parse(f) for f in args.fault),
        )
    except ValueError as err:
        print(f"gateway sim ais140: {err}", file=sys.stderr)
        return 2
    if args.print_config:
        print("[ais140.vehicles]")
        for imei, vehicle in vehicles(settings).items():
            print(f'"{imei}" = "{vehicle}"')
        return 0
    return asyncio.run(_run(settings, args.duration))


async def _run(settings: UnitsSettings, duration: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration > 0:
        loop.call_later(duration, stop.set)
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        stats = await run_units(settings, stop)
    print(
        f"sent {stats.packets} packets over {stats.connects} connections in "
        f"{time.monotonic() - started:.1f} s ({stats.acks} acks, {stats.failures} failures)",
        file=sys.stderr,
    )
    return 0
