"""MqttSink against the real Mosquitto on 127.0.0.1:1883."""

import asyncio
import json
import threading

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.batch import FixBatch, ReadingBatch
from gateway.bundle import Bundle
from gateway.events import Alert, Severity
from gateway.mqtt.client import MqttSettings
from gateway.parts import SinkUnavailable
from gateway.sinks.mqtt import MqttPublishSettings, MqttSink
from gateway.streams import StreamRegistry

NS = 1_000_000_000


def collect(topic: str) -> tuple[paho.Client, list[tuple[str, dict[str, object], bool]]]:
    got: list[tuple[str, dict[str, object], bool]] = []
    ready = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload), m.retain))
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", 1883)
    client.subscribe(topic, qos=1)
    client.loop_start()
    assert ready.wait(5), "the test subscriber could not subscribe"
    return client, got


def bus_bundle(registry: StreamRegistry) -> Bundle:
    vehicle = registry.vehicles.intern("MH12-KQ-4321")
    coolant = registry.register("bus/MH12-KQ-4321/coolant_c", "degC", "temperature")
    fixes = FixBatch(
        np.array([100 * NS], np.int64),
        np.array([vehicle], np.int32),
        np.array([18.5204]),
        np.array([73.8567]),
        np.array([10.0], np.float32),
        np.array([90.0], np.float32),
        np.array([3], np.uint8),
    )
    alert = Alert(
        "engine_overheat",
        "bus/MH12-KQ-4321",
        Severity.CRITICAL,
        opened_at=100 * NS,
        evidence={"coolant_c": np.float64(108.5), "hold_s": 60},
    )
    return Bundle(
        fixes=fixes, readings=ReadingBatch.of([100 * NS], [coolant], [108.5]), alerts=(alert,)
    )


async def test_alerts_and_retained_status_reach_subscribers(mqtt_prefix: str) -> None:
    registry = StreamRegistry()
    sink = MqttSink(
        MqttPublishSettings(broker=MqttSettings(client_id=mqtt_prefix), prefix=mqtt_prefix),
        registry,
    )
    live, got = collect(f"{mqtt_prefix}/#")
    await sink.open()
    try:
        await asyncio.wait_for(sink.client.connected.wait(), 10)
        await sink.write(bus_bundle(registry))
        for _ in range(50):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        await sink.close()
        live.loop_stop()
        live.disconnect()
    topics = {t: (body, retained) for t, body, retained in got}
    alert, _ = topics[f"{mqtt_prefix}/v1/alerts/engine_overheat/bus/MH12-KQ-4321"]
    assert alert["severity"] == "critical" and alert["v"] == 1
    assert alert["evidence"] == {"coolant_c": 108.5, "hold_s": 60}
    assert alert["magnitude"] is None, "NaN goes out as null"
    status_topic = f"{mqtt_prefix}/v1/vehicles/MH12-KQ-4321/status"
    status, _ = topics[status_topic]
    assert status["health"] == {"coolant_c": 108.5}
    assert [a["kind"] for a in status["open_alerts"]] == ["engine_overheat"]  # type: ignore[union-attr]

    late, later = collect(status_topic)  # a dashboard that starts now gets the state at once
    try:
        for _ in range(50):
            if later:
                break
            await asyncio.sleep(0.1)
    finally:
        late.loop_stop()
        late.disconnect()
    assert later and later[0][2] is True, "the status message is retained"
    cleanup = paho.Client(CallbackAPIVersion.VERSION2)
    cleanup.connect("127.0.0.1", 1883)
    cleanup.publish(status_topic, b"", qos=1, retain=True).wait_for_publish(5)
    cleanup.disconnect()


async def test_unreachable_broker_makes_writes_retryable(mqtt_prefix: str) -> None:
    registry = StreamRegistry()
    broker = MqttSettings(port=1, client_id=mqtt_prefix, reconnect_max_s=1.0)
    sink = MqttSink(MqttPublishSettings(broker=broker, prefix=mqtt_prefix), registry)
    await sink.open()
    try:
        await asyncio.sleep(0.3)
        with pytest.raises(SinkUnavailable, match="not connected"):
            await sink.write(bus_bundle(registry))
    finally:
        await sink.close()
