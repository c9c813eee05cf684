"""Topics, JSON payloads, J1939 and AIS-140: good inputs decode, bad ones name their reason."""

from __future__ import annotations

import json
import time

import pytest

from firmware_sim.ais140 import encoder
from gateway.drivers import ais140
from gateway.drivers.ais140 import checksums
from gateway.drivers.mqtt import j1939
from gateway.drivers.mqtt.payloads import Can, Dtc, Limits, PayloadError, Pvt, check
from gateway.drivers.mqtt.sequence import SequenceTracker
from gateway.drivers.mqtt.topics import (
    TopicError,
    data_topic,
    parse_topic,
    subscription,
)
from gateway.mqtt.topics import status_topic

NOW_NS = 1_795_830_000_000_000_000
NOW_MS = NOW_NS // 1_000_000


def pvt(**over: object) -> bytes:
    body: dict[str, object] = {"v": 1, "vehicle": "MH12-KQ-4321", "ts": NOW_MS, "seq": 7}
    body.update(lat=18.5204, lon=73.8567, speed_kmh=32.5, heading=120.0)
    body.update(over)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


# -- topics -------------------------------------------------------------------------------


def test_topic_round_trip_and_status() -> None:
    topic = data_topic("MH12-KQ-4321", "pvt")
    assert topic == "pmpml/v1/MH12-KQ-4321/pvt"
    parsed = parse_topic(topic)
    assert (parsed.vehicle, parsed.kind) == ("MH12-KQ-4321", "pvt")
    assert status_topic("MH12-KQ-4321") == "pmpml/v1/vehicles/MH12-KQ-4321/status"
    assert subscription("pmpml", "ingest") == "$share/ingest/pmpml/v1/+/+"
    assert parse_topic("city/pune/v1/B1/ais140", "city/pune").kind == "ais140"


@pytest.mark.parametrize(
    "topic",
    [
        "pmpml/v2/B1/pvt",
        "pmpml/v1/B1/gps",
        "pmpml/v1/B1/pvt/extra",
        "pmpml/v1/vehicles/B1/status",
        "pmpml/v1/vehicles/pvt",
        "pmpml/v1/-bad/pvt",
        "other/v1/B1/pvt",
    ],
)
def test_bad_topics(topic: str) -> None:
    with pytest.raises(TopicError) as err:
        parse_topic(topic)
    assert err.value.reason == "bad_topic"


# -- JSON payloads ------------------------------------------------------------------------


def test_pvt_decodes() -> None:
    msg = check("pvt", pvt(), "MH12-KQ-4321", NOW_NS)
    assert isinstance(msg, Pvt)
    assert (msg.lat, msg.lon, msg.seq, msg.fix, msg.hist) == (18.5204, 73.8567, 7, 3, False)


BAD = [
    ("bad_json", b'{"v": 1, "vehicle": '),
    ("bad_json", b"\xff\xfe not json"),
    ("wrong_type", pvt(lat="18.5")),
    ("wrong_type", pvt(seq=1.5)),
    ("wrong_type", b"[1, 2, 3]"),
    ("missing_field", pvt(lat=None)),
    ("missing_field", b'{"v": 1}'),
    ("bad_position", pvt(lat=91.0)),
    ("bad_position", pvt(lon=-180.5)),
    ("bad_value", pvt(speed_kmh=-3)),
    ("bad_value", pvt(fix=5)),
    ("bad_version", pvt(v=2)),
    ("spoofed_vehicle", pvt(vehicle="MH12-KQ-9999")),
    ("future_timestamp", pvt(ts=NOW_MS + 301_000)),
    ("too_old", pvt(ts=NOW_MS - 8 * 86_400_000)),
    ("oversized", pvt(pad="x" * 20_000)),
    ("empty", b""),
]


@pytest.mark.parametrize(("reason", "data"), BAD, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD)])
def test_bad_pvt_is_refused_with_its_reason(reason: str, data: bytes) -> None:
    with pytest.raises(PayloadError) as err:
        check("pvt", data, "MH12-KQ-4321", NOW_NS)
    assert err.value.reason == reason


def test_timestamp_limits_follow_config() -> None:
    limits = Limits(max_future_s=10.0, history_window_s=60.0)
    with pytest.raises(PayloadError, match="ahead"):
        check("pvt", pvt(ts=NOW_MS + 11_000), "MH12-KQ-4321", NOW_NS, limits)
    with pytest.raises(PayloadError, match="history window"):
        check("pvt", pvt(ts=NOW_MS - 61_000), "MH12-KQ-4321", NOW_NS, limits)
    assert check("pvt", pvt(ts=NOW_MS + 9_000), "MH12-KQ-4321", NOW_NS, limits)


def test_can_and_dtc_payloads() -> None:
    base = {"v": 1, "vehicle": "B1", "ts": NOW_MS}
    can = check("can", json.dumps({**base, "signals": {"rpm": 900}}).encode(), "B1", NOW_NS)
    assert isinstance(can, Can) and can.signals == {"rpm": 900.0}
    with pytest.raises(PayloadError) as err:
        check("can", json.dumps({**base, "signals": {"warp": 9}}).encode(), "B1", NOW_NS)
    assert err.value.reason == "unknown_signal"
    with pytest.raises(PayloadError) as err:
        check("can", json.dumps(base).encode(), "B1", NOW_NS)
    assert err.value.reason == "missing_field"
    with pytest.raises(PayloadError) as err:
        frames = [{"id": 0x18FEEE00, "data": "zz"}]
        check("can", json.dumps({**base, "frames": frames}).encode(), "B1", NOW_NS)
    assert err.value.reason == "bad_value"
    dtc = check("dtc", json.dumps({**base, "faults": []}).encode(), "B1", NOW_NS)
    assert isinstance(dtc, Dtc) and dtc.faults == []


# -- J1939 --------------------------------------------------------------------------------


def test_j1939_decodes_every_mapped_signal_from_real_layouts() -> None:
    dec = j1939.J1939Decoder()
    # hand-built frames per J1939-71 (priority 3/6, source address 0x00 and 0x17)
    frames = [
        (0x0CF00400, bytes.fromhex("ffffff80 25ffffff".replace(" ", ""))),  # EEC1 1200 rpm
        (0x18FEEE00, bytes([128, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])),  # ET1 88 C
        (0x18FEEF00, bytes([0xFF, 0xFF, 0xFF, 80, 0xFF, 0xFF, 0xFF, 0xFF])),  # EFL/P1 320 kPa
        (0x18FEF200, bytes([0xFA, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])),  # LFE1 12.5 L/h
        (0x18FEF717, bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x10, 0x02, 0xFF, 0xFF])),  # VEP1 26.4 V
        (0x18FEF100, bytes([0xFF, 0x00, 0x2A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])),  # CCVS1 42 km/h
        (0x18FEFC00, bytes([0xFF, 150, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])),  # DD1 60 %
    ]
    got = dict(dec.decode_frames(frames).signals)
    assert got == pytest.approx(
        {
            "rpm": 1200.0,
            "coolant_c": 88.0,
            "oil_kpa": 320.0,
            "fuel_lph": 12.5,
            "battery_v": 26.4,
            "speed_kmh": 42.0,
            "fuel_pct": 60.0,
        }
    )


def test_j1939_not_available_is_dropped() -> None:
    dec = j1939.J1939Decoder()
    assert dec.decode_frame(0x0CF00400, b"\xff" * 8) == []  # 0xFFFF: not available
    assert dec.decode_frame(0x0CF00400, bytes.fromhex("ffffff00feffffff")) == []  # 0xFE00: error
    assert dec.decode_frame(0x18FEEE00, bytes([0xFE] + [0xFF] * 7)) == []  # 0xFE: error
    assert dec.decode_frame(0x18FEEE00, bytes([250] + [0xFF] * 7)) == [("coolant_c", 210.0)]
    assert dec.decode_frame(0x18FECB00, b"\x00" * 8) == []  # a PGN outside the DBC
    with pytest.raises(j1939.J1939Error):
        dec.decode_frame(0x18FEEE00, b"\x00\x00")


def test_dm1_single_frame_and_tp_bam() -> None:
    dec = j1939.J1939Decoder()
    lamps = j1939.Lamps(red=1, amber=1)
    single = j1939.encode_dm1([(110, 0, 3)], lamps)
    assert len(single) == 8
    (fault,) = dec.decode_frames([(0x18FECA00, single)]).faults or ()
    assert (fault.spn, fault.fmi, fault.oc, fault.lamp) == (110, 0, 3, "red")
    # SPN above 16 bits, three DTCs: 14 bytes, over TP.BAM in 2 packets
    payload = j1939.encode_dm1([(520_000, 31, 126), (100, 1, 2), (168, 4, 1)], lamps)
    frames = j1939.bam_frames(j1939.PGN_DM1, payload)
    assert len(frames) == 3 and frames[0][1][0] == 0x20
    faults = dec.decode_frames(frames).faults or ()
    assert [(f.spn, f.fmi, f.oc) for f in faults] == [(520_000, 31, 126), (100, 1, 2), (168, 4, 1)]
    assert dec.decode_frames([(0x18FECA00, j1939.encode_dm1([], j1939.Lamps()))]).faults == ()
    with pytest.raises(j1939.J1939Error) as err:
        dec.decode_frames(frames[:2])  # a BAM missing its last packet
    assert err.value.reason == "bad_tp"


def test_pgn_of_ignores_priority_and_source() -> None:
    assert j1939.pgn_of(0x0CF00400) == j1939.pgn_of(0x18F004FE) == 61444
    assert j1939.pgn_of(0x1CECFF00) == 0xEC00  # PDU1: the destination is not in the PGN


# -- AIS-140 ------------------------------------------------------------------------------

FIELDS = dict(
    header="NRM",
    vendor_id="ACME",
    firmware="2.1",
    packet_type="NR",
    alert_id="01",
    packet_status="L",
    imei="861234567890123",
    vehicle_reg="MH12KQ4321",
    gps_fix="1",
    date="28112026",
    time="014501",
    lat="18.520430",
    lat_dir="N",
    lon="73.856743",
    lon_dir="E",
    speed_kmh="32.5",
    heading="120.0",
    sats="11",
    altitude_m="560",
    pdop="1.2",
    hdop="0.9",
    operator="BSNL",
    ignition="1",
    main_power="1",
    main_v="26.8",
    battery_v="4.1",
    emergency="0",
    tamper="C",
    gsm_signal="24",
    mcc="404",
    mnc="22",
    lac="1A2B",
    cell_id="3C4D",
    frame_number="42",
)


@pytest.fixture(scope="module")
def parser() -> ais140.Ais140Parser:
    return ais140.Ais140Parser()


def packet(profile: str = "arai", **over: str) -> bytes:
    return encoder.fixed_location(profile, {**FIELDS, **over})


def test_ais140_live_and_history(parser: ais140.Ais140Parser) -> None:
    live = parser.parse(packet())
    assert isinstance(live, ais140.Location)
    assert (live.profile, live.live, live.frame_number, live.lat, live.lon) == (
        "arai",
        True,
        42,
        18.52043,
        73.856743,
    )
    assert live.ts_ns == 1_795_830_301 * 10**9
    hist = parser.parse(packet(packet_status="H", lat_dir="S", lon_dir="W"))
    assert isinstance(hist, ais140.Location)
    assert not hist.live and hist.lat < 0 and hist.lon < 0


def test_ais140_profile_by_vendor(parser: ais140.Ais140Parser) -> None:
    sim = parser.parse(packet("gwsim", vendor_id="GWSIM", odometer_km="12.5"))
    assert isinstance(sim, ais140.Location)
    assert sim.profile == "gwsim" and sim.odometer_km == 12.5
    # the arai layout sent under the sim's vendor id has the wrong fields and checksum
    with pytest.raises(ais140.PacketError):
        parser.parse(packet("arai", vendor_id="GWSIM"))


def test_ais140_login_heartbeat_and_panic(parser: ais140.Ais140Parser) -> None:
    login = parser.parse(
        encoder.frame(
            ["LGN", "MH12KQ4321", "861234567890123", "2.1", "AIS140", "18.5", "N", "73.8", "E"],
            "xor8",
        )
    )
    assert isinstance(login, ais140.Login) and login.vehicle_reg == "MH12KQ4321"
    beat_fields = ["HBT", "ACME", "2.1", "861234567890123", "88", "20", "5", "10", "60"]
    beat = parser.parse(encoder.frame([*beat_fields, "1000", "0.0"], "xor8"))
    assert isinstance(beat, ais140.Heartbeat) and beat.battery_pct == 88.0
    panic = parser.parse(packet(header="EPB", packet_type="EA", alert_id="10", emergency="1"))
    assert isinstance(panic, ais140.Location) and panic.alert_kind == "panic"


@pytest.mark.parametrize(
    ("reason", "data"),
    [
        ("bad_checksum", packet("gwsim", vendor_id="GWSIM")[:-4] + b"0000"),
        ("bad_checksum", packet("gwsim", vendor_id="GWSIM").rpartition(b"*")[0]),
        ("bad_packet", b"NRM,ACME"),
        ("bad_packet", b"$NRM,ACME*00*11"),
        ("bad_packet", "$NRM,ÄCME*00".encode()),
        ("unknown_header", encoder.frame(["XYZ", "ACME", "1"], "xor8")),
        ("wrong_field_count", encoder.frame(["NRM", "ACME", "1"], "xor8")),
        ("wrong_field_count", encoder.frame(["LGN", "MH12"], "xor8")),
        ("bad_position", packet(lat="95.0")),
        ("bad_position", packet(lon_dir="X")),
        ("bad_field", packet(date="31022026")),
        ("bad_field", packet(packet_status="X")),
        ("bad_field", packet(frame_number="-1")),
        ("bad_field", packet(speed_kmh="nan")),
        ("oversized", b"$" + b"A" * 2000),
    ],
)
def test_ais140_bad_packets(parser: ais140.Ais140Parser, reason: str, data: bytes) -> None:
    with pytest.raises(ais140.PacketError) as err:
        parser.parse(data)
    assert err.value.reason == reason


def test_ais140_checksums_known_values() -> None:
    assert checksums.xor8(b"GPGGA,1") == f"{_xor(b'GPGGA,1'):02X}"
    assert checksums.crc16(b"123456789") == "29B1"  # the CRC-16/CCITT-FALSE check value


def _xor(data: bytes) -> int:
    acc = 0
    for b in data:
        acc ^= b
    return acc


# -- sequences ----------------------------------------------------------------------------


def test_sequence_tracker_counts_gaps_duplicates_late_and_restarts() -> None:
    t = SequenceTracker(window=8)
    assert all(t.observe(1, s) for s in (0, 1, 2))
    assert not t.observe(1, 2)  # a redelivery
    assert t.observe(1, 6)  # 3, 4, 5 missing
    assert t.stats.gaps == 3
    assert t.observe(1, 4)  # late
    assert not t.observe(1, 4)
    assert (t.stats.gaps, t.stats.late, t.stats.duplicates) == (2, 1, 2)
    assert not t.observe(1, 0)  # 6 back, inside the window and seen: a duplicate
    assert t.observe(1, 20)  # 13 more missing
    assert t.stats.gaps == 15
    assert t.observe(1, 10)  # 10 back, beyond the window: late, cannot be checked
    assert (t.stats.gaps, t.stats.late, t.stats.duplicates) == (14, 2, 3)
    assert t.observe(2, 2**32 - 1) and t.observe(2, 0)  # wraps without a gap
    assert t.stats.gaps == 14
    assert t.observe(1, 500_000)  # a far jump is a restart, not 500k gaps
    assert t.observe(1, 3)  # and so is a reboot back to a low number
    assert t.stats.restarts == 2 and t.stats.gaps == 14


def test_clock_now_is_sane() -> None:
    # the fixed NOW above must stay inside the default history window of real payloads
    assert abs(time.time_ns() - NOW_NS) < 10 * 365 * 86_400 * 10**9
