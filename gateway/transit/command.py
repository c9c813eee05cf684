"""`gateway eta`: arrival predictions offline. Its one subcommand, `replay`, is the
contract in `gateway.transit.replay` (docs/eta.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.helptext import HelpFormatter

EXAMPLES = """examples:
  gateway eta replay --gtfs capmetro_gtfs.zip --avl day.csv --out predictions.csv
  gateway eta replay --gtfs feed.zip --avl today.csv --history mon.csv --out predictions.csv
  gateway eta replay --gtfs feed.zip --avl day.csv --method deviation --out oba.csv
"""


def _replay(args: argparse.Namespace) -> int:
    # heavy imports here, so `gateway --help` stays light
    from gateway.transit.avl import AvlError  # noqa: PLC0415
    from gateway.transit.feed import FeedError  # noqa: PLC0415
    from gateway.transit.predictor import Method  # noqa: PLC0415
    from gateway.transit.replay import run  # noqa: PLC0415

    try:
        count = run(args.gtfs, args.avl, args.history, args.out, Method(args.method))
    except (FeedError, AvlError) as err:
        print(f"gateway eta replay: {err}", file=sys.stderr)
        return 1
    print(f"{args.out}: {count} predictions", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gateway eta replay`."""
    eta = sub.add_parser(
        "eta",
        help="arrival predictions from GTFS and bus positions",
        description="Arrival predictions from a static GTFS feed and bus positions.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    eta_sub = eta.add_subparsers(dest="eta_command", metavar="COMMAND", required=True)
    p = eta_sub.add_parser(
        "replay",
        help="predict arrivals over an AVL CSV, as the gateway stage would",
        description=(
            "Replay an AVL CSV through the arrival prediction stage. Contract: docs/eta.md."
        ),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--gtfs", required=True, type=Path, metavar="GTFS.zip", help="static feed")
    p.add_argument("--avl", required=True, type=Path, metavar="AVL.csv", help="the day to predict")
    p.add_argument(
        "--history",
        action="append",
        default=[],
        type=Path,
        metavar="AVL.csv",
        help="a past day to learn from (repeatable)",
    )
    p.add_argument("--out", required=True, type=Path, metavar="predictions.csv")
    p.add_argument(
        "--method",
        choices=["kalman", "deviation", "schedule"],
        default="kalman",
        help="kalman (ours, default), deviation (OneBusAway's) or schedule",
    )
    p.set_defaults(func=_replay)
