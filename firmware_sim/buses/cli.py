"""`gateway sim buses`: a simulated PMPML fleet (or a real AVL replay) over MQTT."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from firmware_sim.buses.avl import AvlReplay, default_avl, load_avl
from firmware_sim.buses.fleet import FAULT_KINDS, Fault, Fleet, FleetSettings, Message
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from firmware_sim.buses.routes import CairnsRoutes, PmpmlRoutes, RouteDataMissing

EXAMPLES = """\
examples:
  gateway sim buses --buses 50                         50 PMPML buses, JSON, real time
  gateway sim buses --buses 20 --format both --can frames
                                                       AIS-140 packets and raw J1939 frames too
  gateway sim buses --buses 5 --fault overheat:0:60:300 --fault panic:1:30 --fault dtc:2:90
                                                       inject faults (kind:bus:at_s[:duration_s])
  gateway sim buses --routes cairns --fault detour:3:120:240
                                                       real GTFS shapes, bus 3 leaves its route
  gateway sim buses --buses 2000 --speed 10 --duration 3600
                                                       one sim hour in six minutes, stamped so
                                                       the last message is 'now'
  gateway sim buses --replay-avl --speed 60            CapMetro's real 2016-12-16 AVL at 60x
  gateway sim buses --buses 3 --duration 30 --speed 0 --dry-run | head
                                                       print messages instead of publishing

fault kinds: """ + ", ".join(FAULT_KINDS)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "buses",
        help="simulated bus fleet publishing over MQTT",
        description="Simulated PMPML buses driving real stops (or Cairns GTFS shapes), "
        "publishing pvt, CAN, DM1, health and alerts as JSON and AIS-140 over MQTT; "
        "or a replay of real AVL. Deterministic for a seed.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--buses", type=int, default=10, help="fleet size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same messages")
    parser.add_argument("--routes", choices=["pmpml", "cairns"], default="pmpml")
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
        "--duration", type=float, default=0.0, help="sim seconds to run; 0: until Ctrl-C"
    )
    parser.add_argument(
        "--start",
        default="",
        help="sim start, ISO 8601 (default: now; with --speed other than 1 and a "
        "--duration, early enough that the run ends at now)",
    )
    parser.add_argument(
        "--replay-avl",
        nargs="?",
        const=str(default_avl()),
        default=None,
        metavar="CSV",
        help="replay AVL fixes (default file: CapMetro)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="pmpml")
    parser.add_argument("--qos", type=int, choices=[0, 1], default=1)
    parser.add_argument("--username", default=None)
    parser.add_argument("--password-env", default=None, help="env var holding the password")
    parser.add_argument("--ca-file", default=None, help="CA bundle: connect with TLS")
    parser.add_argument("--dry-run", action="store_true", help="print 'topic payload' lines")
    parser.set_defaults(func=run_buses)


def _start_ms(args: argparse.Namespace) -> int:
    if args.start:
        stamp = dt.datetime.fromisoformat(args.start)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
        return int(stamp.timestamp() * 1000)
    now = int(time.time() * 1000)
    if args.duration <= 0 and args.speed > 1.0:
        print(
            "gateway sim buses: faster than real time with no --duration: timestamps will run "
            "ahead of the clock, and a gateway refuses them beyond max_future_s",
            file=sys.stderr,
        )
    if args.duration > 0 and args.speed != 1.0:
        # end the run stamped 'now', so no message is ahead of a gateway's clock
        real = 0.0 if args.speed == 0 else args.duration / args.speed
        return now - int((args.duration - real) * 1000)
    return now


def run_buses(args: argparse.Namespace) -> int:
    try:
        faults = tuple(Fault.parse(f) for f in args.fault)
        routes = PmpmlRoutes() if args.routes == "pmpml" else CairnsRoutes()
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

    started = time.monotonic()
    try:
        if args.replay_avl is not None:
            replay = AvlReplay(
                load_avl(args.replay_avl),
                int(time.time() * 1000),
                args.speed or 1000.0,
                args.prefix,
                args.qos,
            )
            while not replay.done:
                send(replay.due(int(time.time() * 1000)))
                time.sleep(0.05)
        else:
            settings = FleetSettings(
                buses=args.buses,
                seed=args.seed,
                start_ms=_start_ms(args),
                prefix=args.prefix,
                pvt_format=args.format,
                can_format=args.can,
                qos=args.qos,
                faults=faults,
            )
            fleet = Fleet(settings, routes)
            while args.duration <= 0 or fleet.t_s < args.duration:
                if args.speed > 0:
                    lag = fleet.t_s / args.speed - (time.monotonic() - started)
                    if lag > 0:
                        time.sleep(lag)
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
                f"published {publisher.published} messages in {time.monotonic() - started:.1f} s",
                file=sys.stderr,
            )
    return 0
