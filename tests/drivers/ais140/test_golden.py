"""Traccar's 38 real AIS-140 packets decode to what its test asserts (golden/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.drivers.ais140 import Ais140Parser, Location
from gateway.drivers.ais140.command import describe

GOLDEN = Path(__file__).parent / "golden" / "traccar_its.jsonl"
CASES: list[dict[str, Any]] = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
PARSER = Ais140Parser()
POSITION_TYPES = ("location", "emergency")


def test_the_corpus_is_traccars_whole_test() -> None:
    counts = {k: sum(c["traccar"] == k for c in CASES) for k in ("position", "null", "attribute")}
    assert counts == {"position": 28, "null": 7, "attribute": 3}


@pytest.mark.parametrize("case", CASES, ids=[c["packet"][:28] for c in CASES])
def test_packet_decodes_as_expected(case: dict[str, Any]) -> None:
    packet = PARSER.parse(case["packet"].encode())
    got = describe(packet)
    flat = {**got.get("extra", {}), **got}
    actual = {k: flat.get(k) for k in case["expect"]}
    if "analog_input_2" in actual:
        actual["analog_input_2"] = float(actual["analog_input_2"])
    assert actual == case["expect"]


@pytest.mark.parametrize("case", CASES, ids=[c["packet"][:28] for c in CASES])
def test_traccars_assertion_holds(case: dict[str, Any]) -> None:
    packet = PARSER.parse(case["packet"].encode())
    if case["traccar"] == "null" and "note" not in case:
        assert packet.type in ("login", "heartbeat", "health")
        return
    assert isinstance(packet, Location) and packet.type in POSITION_TYPES
    assert -90 <= packet.lat <= 90 and -180 <= packet.lon <= 180
    assert packet.ts_ns is None or packet.ts_ns > 915_148_800 * 10**9  # year > 1999
    assert packet.speed_kmh is None or 0 <= packet.speed_kmh <= 300
    attribute = case.get("traccar_attribute")
    if attribute is None:
        return
    key, value = attribute["key"], attribute["value"]
    if key == "Position.KEY_ODOMETER":
        assert packet.odometer_km is not None and packet.odometer_km * 1000 == float(value)
    elif key == "Position.PREFIX_ADC + 2":
        assert float(packet.extra["analog_input_2"]) == float(value)
    else:
        assert (key, value) == ("Position.KEY_ALARM", "Position.ALARM_SOS")
        assert packet.alert_kind == "panic"


def test_vendors_covered() -> None:
    profiles = {c["expect"]["profile"] for c in CASES}
    assert len(profiles - {"generic"}) >= 13 and "generic" in profiles


def test_decode_command_on_the_golden_file(tmp_path: Path) -> None:
    packets = tmp_path / "packets.txt"
    packets.write_text("".join(c["packet"] + "\r\n" for c in CASES) + "\n$XYZ,junk\n")
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "decode", "ais140", str(packets)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1, run.stderr  # the junk line was refused
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) == len(CASES) + 1
    for case, out in zip(CASES, lines, strict=False):
        assert out["ok"] and out["type"] == case["expect"]["type"]
        assert out["imei"] == case["expect"]["imei"]
        if "ts" in case["expect"]:
            assert (out["ts"], out["lat"], out["lon"]) == (
                case["expect"]["ts"],
                case["expect"]["lat"],
                case["expect"]["lon"],
            )
    assert lines[-1] == {
        "ok": False,
        "reason": "unknown_header",
        "detail": "header 'XYZ' for profile arai",
        "line": len(CASES) + 2,
    }


def test_decode_command_reads_stdin() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "decode", "ais140"],
        input=CASES[3]["packet"] + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(run.stdout)
    assert out["profile"] == "ctpl" and out["odometer_km"] == 194.9 and out["checksum"] == "ok"
