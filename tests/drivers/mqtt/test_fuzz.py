"""Fuzz: the parsers never crash; every input is a value or a reject with a reason."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.ais140 import encoder
from gateway.drivers import ais140
from gateway.drivers.mqtt import j1939
from gateway.drivers.mqtt.payloads import DECODERS, PayloadError, check
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.streams import StreamRegistry

NOW = time.time_ns()
KINDS = sorted(DECODERS)
PARSER = ais140.Ais140Parser()
DEC = j1939.J1939Decoder()
REASONS = {
    "bad_json",
    "wrong_type",
    "missing_field",
    "bad_value",
    "bad_position",
    "bad_version",
    "spoofed_vehicle",
    "future_timestamp",
    "too_old",
    "oversized",
    "unknown_signal",
    "empty",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 1, 2, "1"]),
        "vehicle": st.sampled_from(["B1", "B2", "", 5]),
        "ts": st.sampled_from([NOW // 10**6, 0, -1, NOW // 10**6 + 10**9, "x"]),
        "lat": st.floats(-200, 200) | st.text(max_size=3),
        "lon": st.floats(-400, 400),
        "seq": st.integers(-5, 2**33),
        "kind": st.sampled_from(["panic", "tamper", "nope"]),
        "signals": st.dictionaries(st.sampled_from(["rpm", "coolant_c", "x"]), st.floats()),
        "frames": st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(-1, 2**30), "data": st.text("0123456789abcdefg", max_size=18)}
            ),
            max_size=4,
        ),
        "faults": st.lists(
            st.fixed_dictionaries({"spn": st.integers(-1, 600_000), "fmi": st.integers(0, 40)}),
            max_size=3,
        ),
        "extra": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(KINDS), body=fields)
def test_json_payloads_decode_or_name_a_reason(kind: str, body: dict[str, object]) -> None:
    try:
        check(kind, json.dumps(body).encode(), "B1", NOW)
    except PayloadError as err:
        assert err.reason in REASONS


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=300))
def test_json_payloads_survive_raw_bytes(kind: str, data: bytes) -> None:
    try:
        check(kind, data, "B1", NOW)
    except PayloadError as err:
        assert err.reason in REASONS


GOOD = encoder.fixed_location(
    "arai",
    {
        "header": "NRM",
        "vendor_id": "ACME",
        "packet_type": "NR",
        "alert_id": "1",
        "packet_status": "L",
        "vehicle_reg": "B1",
        "gps_fix": "1",
        "date": "28112026",
        "time": "010203",
        "lat": "18.5",
        "lat_dir": "N",
        "lon": "73.8",
        "lon_dir": "E",
        "speed_kmh": "1",
        "heading": "1",
        "sats": "1",
        "ignition": "1",
        "main_power": "1",
        "main_v": "1",
        "battery_v": "1",
        "emergency": "0",
        "tamper": "C",
        "gsm_signal": "1",
        "frame_number": "1",
    },
)


@st.composite
def mutated_packets(draw: st.DrawFn) -> bytes:
    fields_ = GOOD[1:].rpartition(b"*")[0].decode().split(",")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(fields_) - 1))
        fields_[i] = draw(st.text(alphabet="0123456789.-NSEWLH$*,x ", max_size=10))
    checksum = draw(st.sampled_from(["xor8", "crc16", "none"]))
    return encoder.frame(fields_, checksum)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(data=mutated_packets() | st.binary(max_size=400) | st.just(GOOD))
def test_ais140_parses_or_names_a_reason(data: bytes) -> None:
    try:
        PARSER.parse(data)
    except ais140.PacketError as err:
        assert err.reason


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from([0x0CF00400, 0x18FEEE00, 0x18FECA00, 0x1CECFF00, 0x1CEBFF00])
            | st.integers(0, 2**29 - 1),
            st.binary(min_size=0, max_size=9),
        ),
        max_size=6,
    )
)
def test_j1939_decodes_or_names_a_reason(frames: list[tuple[int, bytes]]) -> None:
    try:
        DEC.decode_frames(frames)
    except j1939.J1939Error as err:
        assert err.reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=st.sampled_from(
        ["pmpml/v1/B1/" + k for k in [*KINDS, "ais140"]] + ["pmpml/v1/x/y/z", "junk"]
    ),
    data=st.binary(max_size=200) | fields.map(lambda b: json.dumps(b).encode()),
)
def test_source_counts_every_message(topic: str, data: bytes) -> None:
    source = MqttSource(MqttSourceSettings(), REGISTRY)
    source.handle(topic, data)
    bundles = source.take()
    rows = sum(len(b.fixes) + len(b.readings) + len(b.events) for b in bundles)
    rejects = sum(source.stats.rejects.values())
    assert rejects == sum(len(b.rejects) for b in bundles) <= 1
    assert rows > 0 or rejects == 1 or topic.endswith(("dtc", "can"))  # dtc/can may carry nothing


REGISTRY = StreamRegistry()
