"""The `gateway` command line.

`gateway --help` loads none of the commands: each is a line of COMMANDS, and
only the command named on the line is imported to build its full parser, so
the help starts fast and needs none of numba, pymodbus, paho, psycopg or the
simulators.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway import __version__
from gateway.config import ConfigError
from gateway.helptext import HelpFormatter
from gateway.logs import configure_logging

Command = Callable[[argparse.Namespace], int]


EPILOG = """\
examples:
  gateway demo --duration 20            simulated meters -> Modbus TCP -> PostgreSQL, for 20 s
  gateway check-config -c config/gateway.example.toml
  gateway --log-json run -c /etc/gateway/gateway.toml
  gateway sim water --dmas 2            simulated water network over Modbus TCP
  gateway sim buses --help              simulated buses publishing over MQTT
  gateway db migrate --dsn postgresql://postgres@127.0.0.1/gateway
  gateway replay --readings dma.csv --config gateway.toml --alerts-out alerts.jsonl
  gateway alerts --dsn postgresql://postgres@127.0.0.1/gateway --kind leak
  gateway outbox stats -c config/gateway.example.toml
  gateway decode ais140 packets.txt     what the gateway makes of a tracking unit's packets

Each command has its own --help with examples.
"""


def _formatter(prog: str) -> HelpFormatter:
    return HelpFormatter(prog, max_help_position=32)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Command,
    *,
    summary: str,
    examples: str,
) -> argparse.ArgumentParser:
    """Add a subcommand whose --help ends with examples."""
    parser = sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog="examples:\n" + examples,
        formatter_class=_formatter,
    )
    parser.set_defaults(func=func)
    return parser


def _check_config(args: argparse.Namespace) -> int:
    from gateway.build import build  # noqa: PLC0415 - keeps `gateway --help` fast
    from gateway.registry import SINKS  # noqa: PLC0415
    from gateway.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config)
    gateway = build(settings, file=args.config, check=True)  # makes every part, starts none
    print(f"{args.config}: OK (gateway id {settings.gateway.id!r})")
    queue = {True: "outbox on disk", False: "in memory"}
    rows = (
        ("sources", ", ".join(f"{p.name} ({p.type})" for p in settings.sources) or "none"),
        ("stages", ", ".join(type(s).__name__ for s in gateway.stages)),
        (
            "sinks",
            ", ".join(
                f"{p.name} ({p.type}, {queue[SINKS[p.type].durable and settings.pipeline.durable]})"
                for p in settings.sinks
            ),
        ),
    )
    for label, text in rows:
        print(f"  {label:<8} {text}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gateway.app import run_gateway  # noqa: PLC0415 - keeps `gateway --help` fast
    from gateway.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config)
    # the file's [log] section, unless the command line says otherwise
    configure_logging(
        "json" if args.log_json else settings.log.format, args.log_level or settings.log.level
    )
    return run_gateway(settings, args.config, record=Path(args.record) if args.record else None)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo  # noqa: PLC0415 - keeps `gateway --help` fast

    return run_demo(args)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from firmware_sim.water.cli import parse_leak  # noqa: PLC0415 - only for `gateway demo`

    demo = add_command(
        sub,
        "demo",
        _demo,
        summary="run simulated meters and buses through the gateway into PostgreSQL",
        examples="  gateway demo --duration 20\n"
        "  gateway demo --duration 0 --dmas 4      run until Ctrl-C\n"
        "  gateway demo --duration 90 --buses 50   bus alerts from injected faults\n"
        "  gateway demo --dsn postgresql://postgres@db.local/gateway_demo\n",
    )
    demo.add_argument(
        "--duration", type=float, default=30.0, help="seconds to run; 0 runs until Ctrl-C"
    )
    demo.add_argument("--dmas", type=int, default=2, help="simulated DMAs (2 meters each)")
    demo.add_argument("--buses", type=int, default=10, help="simulated buses over MQTT; 0 for none")
    demo.add_argument(
        "--ais140", type=int, default=5, help="simulated AIS-140 units over TCP; 0 for none"
    )
    demo.add_argument(
        "--no-rtu",
        dest="rtu",
        action="store_false",
        help="poll every meter over TCP (default: even DMAs over RTU on a pty)",
    )
    demo.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1:5432/gateway_demo",
        help="PostgreSQL to write to; created if missing (default: %(default)s)",
    )
    demo.add_argument(
        "--record",
        metavar="DIR",
        help="also record everything the sources emit, and raw MQTT (docs/recording.md)",
    )
    demo.add_argument(
        "--sqlite",
        default="var/demo.sqlite",
        help="embedded store used when PostgreSQL is unreachable (default: %(default)s)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=600.0,
        help="sim seconds of the water network per real second (default: %(default)s)",
    )
    demo.add_argument(
        "--poll-interval",
        type=float,
        default=0.0,
        help="seconds between polls (default: one reading per sim minute)",
    )
    demo.add_argument(
        "--leak",
        type=lambda t: parse_leak(t, "leak"),
        action="append",
        default=[],
        metavar="DMA:AT:RATE[:RAMP]",
        help="inject a leak (default 1:10m:3)",
    )
    demo.add_argument(
        "--burst",
        type=lambda t: parse_leak(t, "burst"),
        action="append",
        default=[],
        metavar="DMA:AT:RATE",
        help="inject a burst (default 2:2h:10)",
    )


def _add_sim(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "sim",
        help="simulated field devices that speak the real protocols",
        description="Simulated field devices that speak the real protocols.",
        epilog="examples:\n"
        "  gateway sim water --dmas 3 --speed 60\n"
        "  gateway sim buses --buses 50\n"
        "  gateway sim ais140 --devices 20\n",
        formatter_class=_formatter,
    )
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="DEVICES", required=True)
    for module in (
        "firmware_sim.water.cli",
        "firmware_sim.buses.cli",
        "firmware_sim.replay",
        "firmware_sim.ais140.cli",
    ):
        importlib.import_module(module).register(sim_sub)


Adder = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# each command: its one-line summary, and what adds its parser ("module:function" is
# imported only when that command runs)
COMMANDS: dict[str, tuple[str, Adder | str]] = {
    "demo": ("run simulated meters and buses through the gateway into PostgreSQL", _add_demo),
    "sim": ("simulated field devices that speak the real protocols", _add_sim),
    "replay": ("run recorded readings or a recording through the detectors",
               "gateway.replay:register"),
    "alerts": ("list and acknowledge alerts", "gateway.alertdesk:register"),
    "outbox": ("inspect or recover the durable outbox",
               "gateway.pipeline.outbox_command:register"),
    "db": ("the central database: migrate, status", "gateway.db.command:register"),
    "decode": ("what the gateway makes of a device's packets",
               "gateway.drivers.ais140.command:register"),
    "eta": ("arrival predictions from GTFS and bus positions", "gateway.transit.command:register"),
}  # fmt: skip


def _adder(add: Adder | str) -> Adder:
    if callable(add):
        return add
    module, _, name = add.partition(":")
    found: Adder = getattr(importlib.import_module(module), name)
    return found


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, the full parser of that command alone
    (the others are named in the help, not built)."""
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Telemetry gateway for a city's water network (Modbus) and bus fleet (MQTT).",
        epilog=EPILOG,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    parser.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log at this level and above (default: info, or [log] level of the config)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = add_command(
        sub,
        "check-config",
        _check_config,
        summary="validate a configuration file and exit",
        examples="  gateway check-config -c config/gateway.example.toml\n",
    )
    check.add_argument("-c", "--config", required=True, help="the TOML file")

    run = add_command(
        sub,
        "run",
        _run,
        summary="run the gateway daemon from a configuration file",
        examples="  gateway run -c config/gateway.example.toml\n"
        "  GATEWAY_DB_PASSWORD=... gateway --log-json run -c /etc/gateway/gateway.toml\n"
        "  gateway run -c gateway.toml --record var/rec-0412   all it ingests, for replay\n",
    )
    run.add_argument("-c", "--config", required=True, help="the TOML file")
    run.add_argument(
        "--record",
        metavar="DIR",
        help="also write everything the sources emit, and raw MQTT, into this new folder "
        "(docs/recording.md)",
    )

    for name, (summary, add) in COMMANDS.items():
        if only is None or only == name:
            _adder(add)(sub)
        else:  # named in the help, built only when used
            sub.add_parser(name, help=summary)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command a command line names ("" for none, e.g. `gateway --help`)."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)  # its value
        elif not word.startswith("-"):
            return word
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(words))
    args = parser.parse_args(words)
    configure_logging("json" if args.log_json else "kv", args.log_level or "info")
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
