"""The driver README stays true: its sample config loads, its examples decode, its tables match."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import convert
from gateway.drivers import ais140
from gateway.drivers.mqtt import j1939
from gateway.drivers.mqtt.payloads import CAN_QUANTITIES
from gateway.drivers.mqtt.source import UNIT_QUANTITIES, MqttSource, MqttSourceSettings
from gateway.streams import StreamRegistry

README = Path(__file__).resolve().parents[3] / "gateway" / "drivers" / "mqtt" / "README.md"
TEXT = README.read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", TEXT, re.S)


def test_sample_config_loads_into_the_settings() -> None:
    (sample,) = blocks("toml")
    settings = convert(MqttSourceSettings, tomllib.loads(sample)["mqtt"], file=str(README))
    assert settings.broker.share_group == "ingest"
    assert settings.broker.tls is not None and settings.broker.tls.ca_file == "/etc/gateway/ca.pem"
    assert settings.broker.password_file and settings.broker.reconnect_max_s == 5.0
    assert settings.history_window_s == 7 * 86_400


def examples_source() -> MqttSource:
    # the examples carry fixed 2026 timestamps: widen the window so they stay valid
    settings = MqttSourceSettings(history_window_s=50 * 365 * 86_400.0, max_future_s=10**9)
    return MqttSource(settings, StreamRegistry())


def test_every_payload_example_decodes_without_a_reject() -> None:
    examples = re.findall(r"Topic: `([^`]+)`\n\n```json\n(.*?)```", TEXT, re.S)
    assert len(examples) == 7
    kinds = {topic.rsplit("/", 1)[1] for topic, _ in examples}
    assert kinds == {"pvt", "can", "dtc", "alert", "health"}
    source = examples_source()
    for topic, body in examples:
        source.handle(topic, body.encode())
    (bundle,) = source.take()
    assert not source.stats.rejects, [r.detail for r in bundle.rejects]
    assert len(bundle.fixes) == 1
    assert {e.kind for e in bundle.events} == {"dtc", "panic"}
    names = {str(n) for n in source.registry.names_of(bundle.readings.stream)}
    assert "bus/MH12-KQ-4321/coolant_c" in names and "bus/MH12-KQ-4321/gsm_csq" in names


def test_every_ais140_example_parses() -> None:
    packets = re.findall(r"AIS-140 \(([^)]+)\):\n\n```text\n(.*?)\n```", TEXT, re.S)
    assert len(packets) == 5
    parser = ais140.Ais140Parser()
    parsed = {label: parser.parse(p.encode()) for label, p in packets}
    assert isinstance(parsed["login"], ais140.Login)
    assert isinstance(parsed["heartbeat"], ais140.Heartbeat)
    history = parsed["history, emergency"]
    assert isinstance(history, ais140.Location) and not history.live
    assert history.alert_kind == "panic"
    source = examples_source()
    for _, p in packets:
        source.handle("pmpml/v1/MH12-KQ-4321/ais140", p.encode())
    assert not source.stats.rejects
    live, hist = source.take()
    assert len(live.fixes) == 2 and len(hist.fixes) == 1


def test_tables_match_the_code() -> None:
    row = r"^\| (\w+(?:/\w+)?) \| (\d+) \| (\w+) \((\d+)\) \| `(\w+)` \|"
    dbc_rows = re.findall(row, TEXT, re.M)
    assert {row[4] for row in dbc_rows} == set(j1939.QUANTITIES.values()) == set(CAN_QUANTITIES)
    for _, pgn, signal, _, quantity in dbc_rows:
        assert j1939.QUANTITIES[signal] == quantity
        frame_id = j1939.can_id_of(int(pgn))
        assert j1939.pgn_of(frame_id) == int(pgn)
    for quantity in UNIT_QUANTITIES:
        assert f"`{quantity}`" in TEXT


@pytest.mark.parametrize(
    "reason",
    ["bad_topic", "bad_json", "wrong_type", "missing_field", "bad_value", "bad_position",
     "bad_version", "spoofed_vehicle", "future_timestamp", "too_old", "oversized", "empty",
     "unknown_signal", "duplicate", "bad_checksum", "bad_tp"],
)  # fmt: skip
def test_every_reject_reason_is_documented(reason: str) -> None:
    assert f"`{reason}`" in TEXT
