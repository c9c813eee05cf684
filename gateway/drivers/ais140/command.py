"""`gateway decode ais140 [FILE]`: what the gateway makes of a unit's packets.

One packet a line in (stdin by default), one JSON object a line out: the decoded
packet (`"ok": true`) or the reason it was refused (`"ok": false`). It is the
first question when wiring a new vendor's unit, so it shows the profile that read
the packet (`generic` when no vendor profile did) and whether the checksum held.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gateway.drivers.ais140.packets import Heartbeat, Location, Login, Packet, PacketError
from gateway.drivers.ais140.parser import Ais140Parser
from gateway.drivers.ais140.profiles import PROFILES_PATH, load_profiles
from gateway.helptext import HelpFormatter

EXAMPLES = """\
examples:
  echo '$NRM,ROADRPA,1.7AIS,NR,01,L,869867036345389,,1,25022019,051716,25.12891000,N,\
75.85587833,E,7.6,350.00,14,284.8,1.00,1.00,AIRTEL,1,1,28.0,4.2,0,C,13,404,70,4E3B,3C84,\
11,4E3B,39B8,08,4E3B,3965,07,4E3B,48B5,07,4E3B,3C85,0000,00,000551,71978C6B' \\
    | gateway decode ais140
  gateway decode ais140 captured.txt                 one packet a line
  gateway decode ais140 --profiles my_vendors.toml captured.txt
  gateway decode ais140 captured.txt | jq -c 'select(.ok == false)'

Each output line is {"ok": true, "type": "location" | "emergency" | "login" |
"heartbeat" | "health", "vendor", "profile", "imei", "registration", "ts" (ISO 8601,
UTC), "lat", "lon", "speed_kmh", "heading", "live", "checksum" ("ok", "unverified",
"mismatch"), ...} or {"ok": false, "reason", "detail", "line"}. The exit status is
0 when every packet decoded, 1 when any was refused.
"""


def _iso(ts_ns: int | None) -> str | None:
    if ts_ns is None:
        return None
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).isoformat()


def describe(packet: Packet) -> dict[str, Any]:
    """A decoded packet as the JSON object `gateway decode` prints."""
    head: dict[str, Any] = {
        "ok": True,
        "type": packet.type,
        "vendor": packet.vendor,
        "profile": packet.profile,
        "imei": packet.imei,
    }
    if isinstance(packet, Location):
        return head | {
            "registration": packet.vehicle_reg,
            "ts": _iso(packet.ts_ns),
            "lat": packet.lat,
            "lon": packet.lon,
            "speed_kmh": packet.speed_kmh,
            "heading": packet.heading,
            "live": packet.live,
            "checksum": packet.checksum,
            "alert": packet.alert_kind,
            "gps_fix": packet.gps_fix,
            "packet_type": packet.packet_type,
            "alert_id": packet.alert_id,
            "sats": packet.sats,
            "altitude_m": packet.altitude_m,
            "ignition": packet.ignition,
            "main_power": packet.main_power,
            "main_v": packet.main_v,
            "battery_v": packet.battery_v,
            "emergency": packet.emergency,
            "tamper": packet.tamper,
            "gsm_signal": packet.gsm_signal,
            "frame_number": packet.frame_number,
            "odometer_km": packet.odometer_km,
            "extra": dict(packet.extra),
        }
    if isinstance(packet, Login):
        return head | {
            "registration": packet.vehicle_reg,
            "firmware": packet.firmware,
            "protocol": packet.protocol,
            "lat": packet.lat,
            "lon": packet.lon,
            "checksum": packet.checksum,
        }
    assert isinstance(packet, Heartbeat)
    return head | {
        "firmware": packet.firmware,
        "battery_pct": packet.battery_pct,
        "checksum": packet.checksum,
        "fields": dict(packet.fields),
    }


def decode_lines(parser: Ais140Parser, lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """One JSON-ready object per non-blank line."""
    for number, line in enumerate(lines, 1):
        packet = line.strip()
        if not packet:
            continue
        try:
            yield describe(parser.parse(packet))
        except PacketError as err:
            yield {"ok": False, "reason": err.reason, "detail": str(err), "line": number}


def _decode(args: argparse.Namespace) -> int:
    try:
        profiles = load_profiles(Path(args.profiles))
    except (OSError, ValueError) as err:
        print(f"gateway decode: {err}", file=sys.stderr)
        return 2
    parser = Ais140Parser(profiles)
    source: BinaryIO
    if args.file == "-":
        source = sys.stdin.buffer
    else:
        try:
            source = Path(args.file).open("rb")  # noqa: SIM115 - closed below
        except OSError as err:
            print(f"gateway decode: cannot read {args.file}: {err.strerror}", file=sys.stderr)
            return 2
    refused = 0
    try:
        for out in decode_lines(parser, source):
            refused += not out["ok"]
            sys.stdout.write(json.dumps(out, allow_nan=False) + "\n")
    except BrokenPipeError:  # `| head` has what it wanted
        return 0
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    return 1 if refused else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `gateway decode ais140` to the command line."""
    decode = sub.add_parser(
        "decode",
        help="show what the gateway makes of a field device's raw packets",
        description="Show what the gateway makes of a field device's raw packets.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    kinds = decode.add_subparsers(dest="decode_command", metavar="PROTOCOL", required=True)
    ais = kinds.add_parser(
        "ais140",
        help="AIS-140 tracking units' ASCII packets, one a line",
        description="Decode AIS-140 packets, one a line, into one JSON object a line.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    ais.add_argument("file", nargs="?", default="-", help="packets, one a line (default: stdin)")
    ais.add_argument(
        "--profiles", default=str(PROFILES_PATH), help="vendor profiles TOML (default: built-in)"
    )
    ais.set_defaults(func=_decode)
