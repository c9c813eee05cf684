"""`gateway sim buses`: a simulated PMPML fleet (or a real AVL replay) over MQTT."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable

from firmware_sim.buses.avl import DEFAULT_AVL, AvlReplay, load_avl
from firmware_sim.buses.fleet import FAULT_KINDS, Fault, Fleet, FleetSettings, Message
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from firmware_sim.buses.routes import CairnsRoutes, PmpmlRoutes, RouteDataMissing
from gateway.helptext import HelpFormatter

EXAMPLES = """\
examples:
  gateway sim buses --buses 50                         50 PMPML buses, JSON, real time
  gateway sim buses --buses 20 --format both --can frames
                                                       AIS-140 packets and raw J1939 frames too
  gateway sim buses --buses 5 --fault overheat:0:60:300 --fault panic:1:30 --fault dtc:2:90
                                                       inject faults (kind:bus:at_s[:duration_s])
  gateway sim buses --routes cairns --fault detour:3:120:240
                                                       real GTFS shapes, bus 3 leaves its route
  gateway sim buses --buses 2000 --speed 10 --duration 360
                                                       one sim hour in six minutes, stamped so
                                                       the last message is 'now'
  gateway sim buses --replay-avl --speed 60            real AVL at 60x: five CapMetro buses,
                                                       Austin, 2016-12-16 (shipped)
  gateway sim buses --replay-avl ../shared/data/avl/capmetro_2016-12-16.csv --speed 600
                                                       the whole day, 279 buses (CapMetrics)
  gateway sim buses --buses 3 --speed 0 --dry-run | head
                                                       print messages instead of publishing

--duration is real (wall) seconds, as for `gateway sim water`: at --speed N the
run covers N times as many sim seconds.

fault kinds: """ + ", ".join(FAULT_KINDS)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "buses",
        help="simulated bus fleet publishing over MQTT",
        description="Simulated PMPML buses driving real stops (or Cairns GTFS shapes), "
        "publishing pvt, CAN, DM1, health and alerts as JSON and AIS-140 over MQTT; "
        "or a replay of real AVL. Deterministic for a seed.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--buses", type=int, default=10, help="fleet size")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same messages")
    parser.add_argument(
        "--routes",
        choices=["pmpml", "cairns"],
        default="pmpml",
        help="PMPML stop chains (Pune) or Cairns GTFS shapes, both shipped",
    )
    parser.add_argument(
        "--format", choices=["json", "ais140", "both"], default="json", help="pvt as"
    )
    parser.add_argument(
        "--can", choices=["signals", "frames"], default="signals", help="CAN and DM1 as"
    )
    parser.add_argument(
        "--fault", action="append", default=[], metavar="KIND:BUS:AT[:DUR]", help="inject a fault"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="sim seconds per real second; 0: flat out"
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="real seconds to run; 0: until Ctrl-C"
    )
    parser.add_argument(
        "--start",
        default="",
        help="sim start, ISO 8601 (empty: now; with --speed other than 1 and a "
        "--duration, early enough that the run ends at now)",
    )
    parser.add_argument(
        "--replay-avl",
        nargs="?",
        const=str(DEFAULT_AVL),
        default=None,
        metavar="CSV",
        help="replay AVL fixes from CSV (with no CSV: five CapMetro buses, shipped); "
        "--speed 0 replays at 1000x",
    )
    parser.add_argument("--host", default="127.0.0.1", help="MQTT broker")
    parser.add_argument("--port", type=int, default=1883, help="MQTT broker port")
    parser.add_argument("--prefix", default="pmpml", help="topic prefix")
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1, help="MQTT QoS")
    parser.add_argument("--username", default=None, help="MQTT user name")
    parser.add_argument("--password-env", default=None, help="env var holding the password")
    parser.add_argument("--ca-file", default=None, help="CA bundle: connect with TLS")
    parser.add_argument("--dry-run", action="store_true", help="print 'topic payload' lines")
    parser.set_defaults(func=run_buses)


def _start_ms(args: argparse.Namespace, now_s: float) -> int:
    if args.start:
        stamp = dt.datetime.fromisoformat(args.start)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return int(stamp.timestamp() * 1000)
    now = int(now_s * 1000)
    if (args.speed > 1.0 and args.duration <= 0) or args.speed == 0:
        print(
            "gateway sim buses: faster than real time with no --duration (or flat out): "
            "timestamps will run ahead of the clock, and a gateway refuses them beyond "
            "max_future_s",
            file=sys.stderr,
        )
    if args.duration > 0 and args.speed > 0:
        # end the run stamped 'now', so no message is ahead of a gateway's clock
        return now - int(args.duration * (args.speed - 1.0) * 1000)
    return now


def run_buses(
    args: argparse.Namespace,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    wall: Callable[[], float] = time.time,
) -> int:
    """Run until --duration real seconds have passed on `clock` (or Ctrl-C)."""
    try:
        faults = tuple(Fault.parse(f) for f in args.fault)
        routes = PmpmlRoutes() if args.routes == "pmpml" else CairnsRoutes()
        fixes = load_avl(args.replay_avl) if args.replay_avl is not None else []
    except (ValueError, RouteDataMissing) as err:
        print(f"gateway sim buses: {err}", file=sys.stderr)
        return 2
    publisher: BusPublisher | None = None
    if not args.dry_run:
        publisher = BusPublisher(
            BrokerTarget(
                args.host,
                args.port,
                username=args.username,
                password_env=args.password_env,
                ca_file=args.ca_file,
            )
        )
        try:
            publisher.start()
        except ConnectionError as err:
            print(f"gateway sim buses: {err}", file=sys.stderr)
            return 1

    def send(messages: list[Message]) -> None:
        if publisher is None:
            out = sys.stdout
            for m in messages:
                out.write(f"{m.topic} {m.payload.decode()}\n")
        else:
            publisher.publish(messages)

    started = clock()
    duration = float(args.duration)

    def running() -> bool:
        return duration <= 0 or clock() - started < duration

    try:
        if args.replay_avl is not None:
            replay = AvlReplay(
                fixes, int(wall() * 1000), args.speed or 1000.0, args.prefix, args.qos
            )
            while not replay.done and running():
                send(replay.due(int(wall() * 1000)))
                sleep(0.05)
        else:
            settings = FleetSettings(
                buses=args.buses,
                seed=args.seed,
                start_ms=_start_ms(args, wall()),
                prefix=args.prefix,
                pvt_format=args.format,
                can_format=args.can,
                qos=args.qos,
                faults=faults,
            )
            fleet = Fleet(settings, routes)
            end_s = duration * args.speed if args.speed > 0 else 0.0
            while running() if end_s <= 0 else fleet.t_s < end_s:
                if args.speed > 0:
                    lag = fleet.t_s / args.speed - (clock() - started)
                    if lag > 0:
                        sleep(lag)
                send(fleet.advance(1.0))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `| head` closed the pipe
        return 0
    finally:
        if publisher is not None:
            publisher.flush(10.0)
            publisher.close()
            print(
                f"published {publisher.published} messages in {clock() - started:.1f} s",
                file=sys.stderr,
            )
    return 0
