"""MqttSource decoding, without a broker: messages in through `handle`, bundles out of `take`."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from firmware_sim.ais140 import encoder
from gateway.batch import Quality
from gateway.drivers.mqtt import j1939
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.metrics import render
from gateway.streams import StreamRegistry


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def js(**body: object) -> bytes:
    return json.dumps(body).encode()


@pytest.fixture
def source() -> MqttSource:
    return MqttSource(MqttSourceSettings(), StreamRegistry())


def test_pvt_becomes_fix_rows_with_interned_vehicles(source: MqttSource) -> None:
    t = now_ms()
    for i, bus in enumerate(["B1", "B2", "B1"]):
        payload = js(v=1, vehicle=bus, ts=t + i, seq=i, lat=18.5 + i, lon=73.8, speed_kmh=36.0)
        source.handle(f"pmpml/v1/{bus}/pvt", payload)
    source.handle("pmpml/v1/B3/pvt", js(v=1, vehicle="B3", ts=t, lat=18.0, lon=73.0))
    (bundle,) = source.take()
    fixes = bundle.fixes
    assert len(fixes) == 4 and fixes.ts.dtype == np.int64
    names = list(source.registry.vehicles.names_of(fixes.vehicle))
    assert names == ["B1", "B2", "B1", "B3"]
    assert fixes.ts[0] == t * 1_000_000
    assert fixes.speed[0] == pytest.approx(10.0)  # m/s
    assert math.isnan(fixes.speed[3]) and math.isnan(fixes.heading[3])
    assert source.take() == []


def test_can_signals_and_frames_become_streams(source: MqttSource) -> None:
    t = now_ms()
    source.handle("pmpml/v1/B1/can", js(v=1, vehicle="B1", ts=t, signals={"coolant_c": 250.0}))
    frames = j1939.J1939Decoder().encode_signals({"rpm": 1500.0, "oil_kpa": 80.0})
    frames.append((0x18FEF100, b"\xff" * 8))  # CCVS1 all 'not available': no row
    body = [{"id": i, "data": d.hex()} for i, d in frames]
    source.handle("pmpml/v1/B1/can", js(v=1, vehicle="B1", ts=t, frames=body))
    (bundle,) = source.take()
    names = list(source.registry.names_of(bundle.readings.stream))
    assert names == ["bus/B1/coolant_c", "bus/B1/rpm", "bus/B1/oil_kpa"]
    assert list(bundle.readings.value) == [250.0, 1500.0, 80.0]
    assert bundle.readings.quality[0] == Quality.OUT_OF_RANGE  # 250 C is past the range
    assert source.registry.info(source.registry.id_of("bus/B1/oil_kpa")).unit == "kPa"


def test_dtc_decoded_and_raw_bam_become_events(source: MqttSource) -> None:
    t = now_ms()
    faults = [{"spn": 110, "fmi": 0, "oc": 2}]
    lamps = {"red": 1}
    source.handle("pmpml/v1/B1/dtc", js(v=1, vehicle="B1", ts=t, lamps=lamps, faults=faults))
    payload = j1939.encode_dm1([(110, 0, 2), (100, 1, 1)], j1939.Lamps(amber=1))
    raw = [{"id": i, "data": d.hex()} for i, d in j1939.bam_frames(j1939.PGN_DM1, payload)]
    source.handle("pmpml/v1/B2/dtc", js(v=1, vehicle="B2", ts=t, frames=raw))
    source.handle("pmpml/v1/B1/dtc", js(v=1, vehicle="B1", ts=t + 1, faults=[]))
    (bundle,) = source.take()
    first, second, cleared = bundle.events
    assert (first.kind, first.asset) == ("dtc", "bus/B1")
    assert first.data["faults"] == [{"spn": 110, "fmi": 0, "oc": 2, "lamp": "red"}]
    assert [f["spn"] for f in second.data["faults"]] == [110, 100]
    assert second.data["faults"][0]["lamp"] == "amber"
    assert cleared.data["faults"] == [] and cleared.message == "no active DTC"


def test_alert_and_health(source: MqttSource) -> None:
    t = now_ms()
    source.handle("pmpml/v1/B1/alert", js(v=1, vehicle="B1", ts=t, kind="panic", lat=18.5))
    health = js(v=1, vehicle="B1", ts=t, unit_battery_v=4.0, gsm_csq=17, firmware="x")
    source.handle("pmpml/v1/B1/health", health)
    (bundle,) = source.take()
    (panic,) = bundle.events
    assert (panic.kind, panic.data["live"]) == ("panic", True)
    names = set(source.registry.names_of(bundle.readings.stream))
    assert names == {"bus/B1/unit_battery_v", "bus/B1/gsm_csq"}


def ais(status: str = "L", frame: int = 1, **over: str) -> bytes:
    stamp = time.gmtime(time.time())
    values = {
        "header": "NRM",
        "vendor_id": "GWSIM",
        "packet_type": "NR",
        "alert_id": "01",
        "packet_status": status,
        "vehicle_reg": "MH12KQ4321",
        "gps_fix": "1",
        "date": time.strftime("%d%m%Y", stamp),
        "time": time.strftime("%H%M%S", stamp),
        "lat": "18.5",
        "lat_dir": "N",
        "lon": "73.8",
        "lon_dir": "E",
        "speed_kmh": "36.0",
        "heading": "90",
        "sats": "9",
        "ignition": "1",
        "main_power": "1",
        "main_v": "27.1",
        "battery_v": "4.0",
        "emergency": "0",
        "tamper": "C",
        "gsm_signal": "20",
        "frame_number": str(frame),
    }
    values.update(over)
    return encoder.fixed_location("gwsim", values)


def test_ais140_live_history_and_panic(source: MqttSource) -> None:
    topic = "pmpml/v1/MH12-KQ-4321/ais140"
    source.handle(topic, ais("L", 1))
    source.handle(topic, ais("H", 2))
    source.handle(topic, ais("L", 3, emergency="1", packet_type="EA", alert_id="10"))
    source.handle(topic, ais("H", 4, emergency="1", packet_type="EA", alert_id="10"))
    live, hist = source.take()
    assert len(live.fixes) == 2 and len(hist.fixes) == 2
    assert live.live and not hist.live, "history is marked, so stages raise no live alerts"
    assert {e.kind for e in live.events} == {"panic"}
    assert [e.data["live"] for e in live.events] == [True, False]
    assert len(live.readings) == 8 and len(hist.readings) == 8
    assert source.stats.history_rows == 10


BAD_CASES = [
    ("bad_topic", "pmpml/v1/B1/nonsense", b"{}"),
    ("bad_topic", "pmpml/v1/vehicles/B1/status", b"{}"),
    ("bad_json", "pmpml/v1/B1/pvt", b"{not json"),
    ("wrong_type", "pmpml/v1/B1/pvt", b'{"v":1,"vehicle":"B1","ts":"now","lat":1,"lon":1}'),
    ("missing_field", "pmpml/v1/B1/pvt", b'{"v":1,"vehicle":"B1","lat":1,"lon":1}'),
    ("bad_position", "pmpml/v1/B1/pvt", b'{"v":1,"vehicle":"B1","ts":TS,"lat":95,"lon":1}'),
    ("spoofed_vehicle", "pmpml/v1/B1/pvt", b'{"v":1,"vehicle":"B9","ts":TS,"lat":1,"lon":1}'),
    ("future_timestamp", "pmpml/v1/B1/pvt", b'{"v":1,"vehicle":"B1","ts":FUT,"lat":1,"lon":1}'),
    ("too_old", "pmpml/v1/B1/pvt", b'{"v":1,"vehicle":"B1","ts":1000,"lat":1,"lon":1}'),
    ("oversized", "pmpml/v1/B1/pvt", b'{"pad":"' + b"x" * 20_000 + b'"}'),
    ("bad_version", "pmpml/v1/B1/pvt", b'{"v":9,"vehicle":"B1","ts":TS,"lat":1,"lon":1}'),
    ("bad_checksum", "pmpml/v1/MH12-KQ-4321/ais140", b"AIS_BAD_CRC"),
    ("spoofed_vehicle", "pmpml/v1/MH12-KQ-0000/ais140", b"AIS_OK"),
    ("bad_tp", "pmpml/v1/B1/dtc", b"DTC_DT_WITHOUT_BAM"),
]


def _fill(data: bytes) -> bytes:
    t = now_ms()
    data = data.replace(b"FUT", str(t + 400_000).encode()).replace(b"TS", str(t).encode())
    if data == b"AIS_OK":
        return ais()
    if data == b"AIS_BAD_CRC":
        good = ais()
        return good[:-4] + (b"0000" if not good.endswith(b"0000") else b"1111")
    if data == b"DTC_DT_WITHOUT_BAM":
        payload = j1939.encode_dm1([(110, 0, 2), (100, 1, 1)], j1939.Lamps(amber=1))
        frames = j1939.bam_frames(j1939.PGN_DM1, payload)[1:]  # the packets, not the BAM
        raw = [{"id": i, "data": d.hex()} for i, d in frames]
        return js(v=1, vehicle="B1", ts=t, frames=raw)
    return data


@pytest.mark.parametrize(("reason", "topic", "data"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_every_bad_input_is_rejected_counted_and_kept(
    source: MqttSource, reason: str, topic: str, data: bytes
) -> None:
    payload = _fill(data)
    source.handle(topic, payload)
    (bundle,) = source.take()
    assert len(bundle.fixes) == 0 and len(bundle.readings) == 0 and not bundle.events
    (reject,) = bundle.rejects
    assert reject.reason == reason and reject.source == f"mqtt:{topic}"
    assert reject.detail and reject.payload == payload[: reject.MAX_PAYLOAD]
    assert source.stats.rejects == {reason: 1}


def _bam_message(frames: list[tuple[int, bytes]], t: int, seq: int) -> bytes:
    raw = [{"id": i, "data": d.hex()} for i, d in frames]
    return js(v=1, vehicle="B1", ts=t, seq=seq, frames=raw)


def test_a_dm1_over_tp_bam_may_go_on_in_the_next_message(source: MqttSource) -> None:
    """A unit cuts its frames into messages where it likes: a BAM in one message, its
    packets in the next (and a resent copy of the first does not restart it)."""
    payload = j1939.encode_dm1([(110, 0, 2), (100, 1, 1), (168, 4, 1)], j1939.Lamps(amber=1))
    frames = j1939.bam_frames(j1939.PGN_DM1, payload)
    assert len(frames) == 3
    t = now_ms()
    source.handle("pmpml/v1/B1/dtc", _bam_message(frames[:2], t, 1))
    source.handle("pmpml/v1/B1/dtc", _bam_message(frames[:2], t, 1))  # QoS 1 resend
    source.handle("pmpml/v1/B1/dtc", _bam_message(frames[2:], t + 300, 2))
    (bundle,) = source.take()
    (event,) = bundle.events
    assert [(f["spn"], f["fmi"]) for f in event.data["faults"]] == [(110, 0), (100, 1), (168, 4)]
    assert source.stats.rejects == {"duplicate": 1}


def test_a_tp_bam_left_incomplete_is_rejected_once(source: MqttSource) -> None:
    payload = j1939.encode_dm1([(110, 0, 2), (100, 1, 1)], j1939.Lamps(amber=1))
    frames = j1939.bam_frames(j1939.PGN_DM1, payload)
    t = now_ms()
    source.handle("pmpml/v1/B1/dtc", _bam_message(frames[:1], t, 1))
    # the rest never comes: the unit's next message, 5 s later, carries a whole DM1
    single = j1939.encode_dm1([(100, 1, 1)], j1939.Lamps(amber=1))
    source.handle("pmpml/v1/B1/dtc", _bam_message([(0x18FECA00, single)], t + 5_000, 2))
    (bundle,) = source.take()
    (event,) = bundle.events
    assert [f["spn"] for f in event.data["faults"]] == [100]
    (reject,) = bundle.rejects
    assert reject.reason == "bad_tp" and "0 of 2 packets" in reject.detail, reject.detail
    # a new BAM from the same source replaces one left open
    source.handle("pmpml/v1/B1/dtc", _bam_message(frames[:1], t + 6_000, 3))
    source.handle("pmpml/v1/B1/dtc", _bam_message(frames, t + 6_100, 4))
    (bundle,) = source.take()
    assert len(bundle.events) == 1 and "replaced by a new BAM" in bundle.rejects[0].detail
    assert source.stats.rejects == {"bad_tp": 2}


def test_duplicates_are_rejected_and_gaps_counted(source: MqttSource) -> None:
    t = now_ms()

    def send(seq: int) -> None:
        source.handle("pmpml/v1/B1/pvt", js(v=1, vehicle="B1", ts=t, seq=seq, lat=1, lon=1))

    for seq in (0, 1, 2, 2, 5, 1, 4):
        send(seq)
    source.handle("pmpml/v1/MH12-KQ-4321/ais140", ais(frame=9))
    source.handle("pmpml/v1/MH12-KQ-4321/ais140", ais(frame=9))
    (bundle,) = source.take()
    assert len(bundle.fixes) == 6  # 0 1 2 5 4 and one AIS-140 fix
    assert source.stats.rejects == {"duplicate": 3}
    assert source.sequences.stats.gaps == 1  # 3 never came
    assert source.sequences.stats.late == 1


def test_a_bad_message_never_stalls_the_good_ones(source: MqttSource) -> None:
    t = now_ms()
    for i in range(100):
        good = js(v=1, vehicle="B1", ts=t, seq=i, lat=1, lon=1)
        source.handle("pmpml/v1/B1/pvt", good if i % 2 else b"\x00garbage")
    (bundle,) = source.take()
    assert len(bundle.fixes) == 50 and len(bundle.rejects) == 50


def test_reject_storage_is_bounded_per_flush() -> None:
    source = MqttSource(MqttSourceSettings(max_rejects_per_flush=5), StreamRegistry())
    for _ in range(20):
        source.handle("pmpml/v1/B1/pvt", b"{")
    (bundle,) = source.take()
    assert len(bundle.rejects) == 5
    assert source.stats.rejects["bad_json"] == 20 and source.stats.rejects_not_kept == 15


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="prefix"):
        MqttSourceSettings(prefix="pmpml/#")
    with pytest.raises(ValueError, match="flush"):
        MqttSourceSettings(flush_messages=0)


def test_rejects_are_in_the_metrics_by_reason_and_logged_as_a_rate_limited_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = MqttSource(MqttSourceSettings(), StreamRegistry())
    clock = [1000.0]
    source.clock = lambda: clock[0]
    with caplog.at_level("WARNING", logger="gateway.mqtt"):
        source.handle("pmpml/v1/B1/pvt", b"{")  # the first is told at once
        for _ in range(9):
            source.handle("pmpml/v1/B1/pvt", b"{")
        source.handle("pmpml/v1/B1/oops", b"{}")
        clock[0] += 61  # a minute on: the ten since are summed in one line
        source.handle("pmpml/v1/B1/pvt", b"{")
    lines = [r._fields for r in caplog.records if r.getMessage() == "mqtt.rejects"]  # type: ignore[attr-defined]
    assert [line["counts"] for line in lines] == ["bad_json=1", "bad_json=10,bad_topic=1"]
    text = render([source]).decode()
    assert 'gateway_mqtt_rejects_total{reason="bad_json",source="mqtt"} 11.0' in text
    assert 'gateway_mqtt_rejects_total{reason="bad_topic",source="mqtt"} 1.0' in text


def test_a_ts_in_seconds_is_refused_with_a_hint() -> None:
    source = MqttSource(MqttSourceSettings(), StreamRegistry())
    seconds = int(time.time())
    source.handle("pmpml/v1/B1/pvt", js(v=1, vehicle="B1", ts=seconds, lat=18.0, lon=73.0))
    (bundle,) = source.take()
    (reject,) = bundle.rejects
    assert reject.reason == "too_old" and "looks like seconds" in reject.detail
