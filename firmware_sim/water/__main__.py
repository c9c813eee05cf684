"""`python -m firmware_sim.water ...`: the same as `gateway sim water ...`."""

from __future__ import annotations

import argparse
import sys

from firmware_sim.water.cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["water", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
