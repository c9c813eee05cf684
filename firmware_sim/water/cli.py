"""`gateway sim water`: serve the simulated water network until Ctrl-C.

register(sub)  adds the `water` subcommand to the `gateway sim` subparsers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import re
import signal
import sys
from typing import get_args

from firmware_sim.water.devices import FaultKind, FaultSpec
from firmware_sim.water.model import LeakSpec, ModelSettings
from firmware_sim.water.server import WaterNetworkSim, WaterSimSettings
from gateway.helptext import HelpFormatter

EXAMPLES = """\
examples:
  gateway sim water                                 1 DMA over Modbus TCP on 127.0.0.1:5020...
  gateway sim water --dmas 3 --amr 4 --speed 60     3 DMAs, 4 AMR meters each, a minute a second
  gateway sim water --leak 1:2h:3.5:6h              DMA 1: from hour 2, ramping to 3.5 L/s in 6 h
  gateway sim water --burst 2:30m:25                DMA 2: a 25 L/s burst at sim minute 30
  gateway sim water --fault dead:dma-01/pz-1:10m:20m --fault crc:dma-01/inlet
  gateway sim water --rtu --baud 19200 --no-tcp     RTU on a pty (the path is printed) at 19200 baud
  gateway sim water --hf-logger                     add a 100 Hz pressure logger per DMA

  mbpoll -m tcp -p 5020 -a 1 -t 3:float -B -r 1 -c 1 -1 127.0.0.1   inlet flow (L/s) of DMA 1

Times take s, m, h or d (sim time since the start); --duration is real (wall) seconds,
as for `gateway sim buses`. Fault kinds: stuck, dead, slow,
garbage, crc, exception, wrong_unit, and the alarm bits tamper, low_battery, empty_pipe, meter_leak,
reverse_flow. Device k (in the printed order, from 0) listens on port PORT_BASE + k.
The same --seed gives the same readings at the same sim time.
"""


def parse_duration(text: str) -> float:
    """'90' or '90s', '30m', '2h', '3d' to seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time like 90s, 30m, 2h or 3d")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return float(m.group(1)) * scale


def parse_leak(text: str, kind: str = "leak") -> LeakSpec:
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"{kind} {text!r}: write DMA:AT:RATE_LPS[:RAMP]")
    try:
        dma, rate = int(parts[0]), float(parts[2])
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{kind} {text!r}: {err}") from err
    ramp = parse_duration(parts[3]) if len(parts) == 4 else 0.0
    return LeakSpec(dma=dma, at_s=parse_duration(parts[1]), rate_lps=rate, ramp_s=ramp, kind=kind)


def parse_fault(text: str) -> FaultSpec:
    parts = text.split(":")
    kinds = get_args(FaultKind)
    if len(parts) < 2 or parts[0] not in kinds:
        raise argparse.ArgumentTypeError(
            f"fault {text!r}: write KIND:DEVICE[:START[:END]] with KIND one of {', '.join(kinds)}"
        )
    start = parse_duration(parts[2]) if len(parts) > 2 else 0.0
    end = parse_duration(parts[3]) if len(parts) > 3 else math.inf
    return FaultSpec(device=parts[1], kind=parts[0], start_s=start, end_s=end)  # type: ignore[arg-type]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "water",
        help="simulated water network (DMAs of meters) over Modbus TCP and RTU",
        description="Simulated DMAs (inlet flow meter, pressure loggers, AMR meters) with "
        "diurnal demand, leaks, bursts and faults, served over Modbus TCP and over RTU on a "
        "pty pair. Deterministic for a seed; sim time can run faster than real time.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--dmas", type=int, default=1, help="DMAs")
    parser.add_argument("--zone-points", type=int, default=1, help="interior pressure loggers")
    parser.add_argument("--amr", type=int, default=0, help="customer AMR meters per DMA")
    parser.add_argument("--hf-logger", action="store_true", help="a 100 Hz logger per DMA")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same readings")
    parser.add_argument("--speed", type=float, default=1.0, help="sim seconds per real second")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve TCP on")
    parser.add_argument("--port-base", type=int, default=5020, help="TCP port of device 0")
    parser.add_argument("--no-tcp", action="store_true", help="do not serve TCP")
    parser.add_argument("--rtu", action="store_true", help="serve RTU on a pty pair")
    parser.add_argument("--baud", type=int, default=0, help="emulate this line rate on the pty")
    parser.add_argument("--leak", type=parse_leak, action="append", default=[],
                        metavar="DMA:AT:RATE[:RAMP]", help="inject a leak")  # fmt: skip
    parser.add_argument("--burst", type=lambda t: parse_leak(t, "burst"), action="append",
                        default=[], metavar="DMA:AT:RATE", help="inject a burst")  # fmt: skip
    parser.add_argument("--fault", type=parse_fault, action="append", default=[],
                        metavar="KIND:DEVICE[:START[:END]]", help="inject a fault")  # fmt: skip
    parser.add_argument(
        "--duration", type=float, default=0.0, help="real seconds to run; 0: until Ctrl-C"
    )
    parser.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> WaterSimSettings:
    model = ModelSettings(
        dmas=args.dmas,
        seed=args.seed,
        amr_per_dma=args.amr,
        leaks=tuple(args.leak) + tuple(args.burst),
    )
    return WaterSimSettings(
        model=model,
        zone_points=args.zone_points,
        hf_logger=args.hf_logger,
        host=args.host,
        tcp=not args.no_tcp,
        tcp_port_base=args.port_base,
        rtu=args.rtu,
        baudrate=args.baud,
        speed=args.speed,
        faults=tuple(args.fault),
    )


async def serve(sim: WaterNetworkSim, duration: float) -> None:
    settings = sim.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        print(f"{'device':<18} {'unit':>4} {'tcp port':>8}  profile")
        for m in sim.devices:
            port = str(m.tcp_port) if settings.tcp else "-"
            print(f"{m.name:<18} {m.unit_id:>4} {port:>8}  {m.profile}")
        if sim.rtu_port:
            print(f"RTU on {sim.rtu_port} (baud {settings.baudrate or 'unlimited'})")
        sys.stdout.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration or None):
                await stop.wait()
    finally:
        await sim.stop()


def run(args: argparse.Namespace) -> int:
    try:
        sim = WaterNetworkSim(settings_from(args))  # checks leaks and faults; opens nothing
    except ValueError as err:
        print(f"gateway sim water: {err}", file=sys.stderr)
        return 2
    asyncio.run(serve(sim, args.duration))
    return 0
