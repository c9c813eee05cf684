"""Against real Mosquitto: broker restarts, TLS with auth, shared subscriptions, 3.1.1 fallback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_sim.buses.fleet import Message
from firmware_sim.buses.publisher import BrokerTarget, BusPublisher
from gateway.bundle import Bundle
from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings
from gateway.mqtt.client import MqttClient, MqttSettings, TlsSettings
from gateway.streams import StreamRegistry

from .conftest import Mosquitto, make_certs

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[3]


def pvt_messages(prefix: str, buses: int, per_bus: int, base_ms: int) -> list[Message]:
    """Interleaved pvt messages; (vehicle, ts) identifies each one."""
    out = []
    for seq in range(per_bus):
        for b in range(buses):
            vehicle = f"B{b:03d}"
            body = {"v": 1, "vehicle": vehicle, "ts": base_ms + seq * 1000, "seq": seq}
            body.update(lat=18.5 + b / 1000, lon=73.8 + seq / 10000)
            out.append(Message(f"{prefix}/v1/{vehicle}/pvt", json.dumps(body).encode(), 1))
    return out


def identities(messages: list[Message]) -> list[tuple[str, int]]:
    out = []
    for m in messages:
        body = json.loads(m.payload)
        out.append((body["vehicle"], body["ts"] * 1_000_000))
    return out


class Collector:
    def __init__(self, registry: StreamRegistry) -> None:
        self.registry = registry
        self.rows: list[tuple[str, int]] = []

    async def emit(self, bundle: Bundle) -> None:
        names = self.registry.vehicles.names_of(bundle.fixes.vehicle)
        self.rows.extend(zip(map(str, names), map(int, bundle.fixes.ts), strict=True))


async def until(cond: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def connected(source: MqttSource) -> bool:
    return source.client is not None and source.client.connected.is_set()


def test_broker_restart_while_buses_publish_loses_nothing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    messages = pvt_messages(prefix, buses=20, per_bus=60, base_ms=int(time.time() * 1000) - 90_000)

    async def scenario() -> None:
        registry = StreamRegistry()
        mqtt = MqttSettings(
            port=broker.port,
            client_id=f"gw-{uuid.uuid4().hex[:6]}",
            reconnect_initial_s=0.2,
            reconnect_max_s=2.0,
        )
        source = MqttSource(MqttSourceSettings(broker=mqtt, prefix=prefix, flush_ms=50), registry)
        got = Collector(registry)
        task = asyncio.create_task(source.run(got.emit))
        await until(lambda: connected(source), 5)
        await asyncio.sleep(0.3)
        publisher = BusPublisher(BrokerTarget(port=broker.port, client_id=f"pub-{prefix}"))
        publisher.start()

        def produce() -> None:  # 1,200 messages over ~3 s, straddling the restart
            for i in range(0, len(messages), 20):
                publisher.publish(messages[i : i + 20])
                time.sleep(0.05)

        producer = threading.Thread(target=produce)
        producer.start()
        await asyncio.sleep(0.8)
        broker.stop()
        await until(lambda: not connected(source), 5)
        await asyncio.sleep(1.0)
        broker.start()
        resumed_in = await until(lambda: connected(source), 5.0)
        await asyncio.get_running_loop().run_in_executor(None, producer.join)
        assert publisher.flush(20), "the publisher's QoS 1 messages were not all acknowledged"
        await until(lambda: len(set(got.rows)) >= len(messages), 15)
        await asyncio.sleep(0.3)
        publisher.close()
        await stop(task)
        assert source.client is not None
        assert source.client.stats.disconnects >= 1
        assert resumed_in < 5.0
        assert sorted(got.rows) == sorted(identities(messages))  # all, and each once
        assert set(source.stats.rejects) <= {"duplicate"}  # QoS 1 redeliveries, refused

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()


def test_tls_with_client_cert_and_password(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "gateway", "s3cret"],
        check=True,
    )
    broker = Mosquitto(
        tmp_path,
        anonymous=False,
        extra=(
            f"cafile {certs['ca.pem']}\ncertfile {certs['server.pem']}\n"
            f"keyfile {certs['server.key']}\nrequire_certificate true\n"
            f"password_file {tmp_path / 'passwd'}\n"
        ),
    )
    broker.start()
    (tmp_path / "password").write_text("s3cret\n")
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    messages = pvt_messages(prefix, buses=5, per_bus=10, base_ms=int(time.time() * 1000) - 20_000)
    tls = TlsSettings(
        ca_file=str(certs["ca.pem"]),
        cert_file=str(certs["client.pem"]),
        key_file=str(certs["client.key"]),
    )

    def settings(**over: object) -> MqttSettings:
        base: dict[str, object] = dict(
            port=broker.port,
            client_id=f"gw-{uuid.uuid4().hex[:6]}",
            username="gateway",
            password_file=str(tmp_path / "password"),
            tls=tls,
            reconnect_initial_s=0.1,
            reconnect_max_s=0.5,
        )
        base.update(over)
        return MqttSettings(**base)  # type: ignore[arg-type]

    async def scenario() -> None:
        registry = StreamRegistry()
        source = MqttSource(MqttSourceSettings(broker=settings(), prefix=prefix), registry)
        got = Collector(registry)
        task = asyncio.create_task(source.run(got.emit))
        await until(lambda: connected(source), 5)
        await asyncio.sleep(0.3)
        os.environ["GW_TEST_MQTT_PW"] = "s3cret"
        publisher = BusPublisher(
            BrokerTarget(
                port=broker.port,
                username="gateway",
                password_env="GW_TEST_MQTT_PW",
                ca_file=str(certs["ca.pem"]),
                cert_file=str(certs["client.pem"]),
                key_file=str(certs["client.key"]),
            )
        )
        publisher.start()
        publisher.publish(messages)
        assert publisher.flush(10)
        publisher.close()
        await until(lambda: len(got.rows) >= len(messages), 10)
        await stop(task)
        assert sorted(got.rows) == sorted(identities(messages))
        assert source.client is not None and source.client.stats.protocol == "5"

        # a wrong password, a CA that did not sign the broker, no client cert: all refused,
        # retried with backoff, never connected
        os.environ["GW_TEST_MQTT_BAD"] = "wrong"
        wrong = [
            settings(password_file=None, password_env="GW_TEST_MQTT_BAD"),
            settings(tls=TlsSettings(ca_file=str(certs["other.pem"]))),
            settings(tls=TlsSettings(ca_file=str(certs["ca.pem"]))),
        ]
        for bad in wrong:
            client = MqttClient(bad, [f"{prefix}/#"], lambda t, p: None)
            run = asyncio.create_task(client.run())
            await until(lambda c=client: c.stats.connect_failures >= 2, 10)  # type: ignore[misc]
            assert client.stats.connects == 0 and client.stats.state in ("backoff", "connecting")
            assert client.stats.last_error
            await stop(run)

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()


def test_two_gateways_on_a_shared_subscription_split_the_fleet(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    messages = pvt_messages(prefix, buses=50, per_bus=40, base_ms=int(time.time() * 1000) - 60_000)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = []
    try:
        for n in range(2):
            cmd = [
                sys.executable,
                str(Path(__file__).with_name("shared_child.py")),
                "--port", str(broker.port),
                "--prefix", prefix,
                "--group", "ingest",
                "--client-id", f"gw-shared-{n}-{prefix}",
                "--out", str(tmp_path / f"child{n}.json"),
            ]  # fmt: skip
            child = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
            children.append(child)
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        publisher = BusPublisher(BrokerTarget(port=broker.port))
        publisher.start()
        publisher.publish(messages)
        assert publisher.flush(20)
        publisher.close()
        for child in children:
            assert child.wait(60) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        broker.stop()
    results = [json.loads((tmp_path / f"child{n}.json").read_text()) for n in range(2)]
    parts = [[(v, t) for v, t in r["rows"]] for r in results]
    assert all(len(p) > len(messages) // 10 for p in parts), [len(p) for p in parts]
    assert not set(parts[0]) & set(parts[1])  # nothing doubled across the two
    assert sorted(parts[0] + parts[1]) == sorted(identities(messages))  # nothing lost


def test_auto_falls_back_to_mqtt_311_when_the_broker_refuses_5(broker: Mosquitto) -> None:
    """A proxy in front of our mosquitto refuses MQTT 5 CONNECTs the way a 3.1.1-only
    broker does (CONNACK return code 1) and passes 3.1.1 ones through."""
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    messages = pvt_messages(prefix, buses=3, per_bus=5, base_ms=int(time.time() * 1000) - 10_000)
    levels: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readexactly(1)
        length, mult, encoded = 0, 1, b""
        while True:
            byte = await reader.readexactly(1)
            encoded += byte
            length += (byte[0] & 127) * mult
            mult *= 128
            if not byte[0] & 128:
                break
        body = await reader.readexactly(length)
        levels.append(body[6])  # after the protocol name: 00 04 'MQTT', then the level
        if body[6] == 5:
            writer.write(bytes([0x20, 0x02, 0x00, 0x01]))  # unacceptable protocol version
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", broker.port)
        up_writer.write(header + encoded + body)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def scenario() -> None:
        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        registry = StreamRegistry()
        mqtt = MqttSettings(port=port, client_id=f"gw-{prefix}", reconnect_initial_s=0.1)
        source = MqttSource(MqttSourceSettings(broker=mqtt, prefix=prefix), registry)
        got = Collector(registry)
        task = asyncio.create_task(source.run(got.emit))
        await until(lambda: connected(source), 5)
        await asyncio.sleep(0.3)
        publisher = BusPublisher(BrokerTarget(port=broker.port))
        publisher.start()
        publisher.publish(messages)
        assert publisher.flush(10)
        publisher.close()
        await until(lambda: len(got.rows) >= len(messages), 10)
        await stop(task)
        server.close()
        assert source.client is not None and source.client.stats.protocol == "3.1.1"
        assert levels[:2] == [5, 4]
        assert sorted(got.rows) == sorted(identities(messages))

    asyncio.run(scenario())


def test_stopping_the_source_emits_what_it_already_decoded(mqtt_prefix: str) -> None:
    """Against the shared Mosquitto: messages decoded but not yet flushed when the
    source is cancelled are emitted on the way out, not dropped. (16 messages: fewer
    than Mosquitto's default 20 unacknowledged in flight.)"""
    messages = pvt_messages(
        mqtt_prefix, buses=4, per_bus=4, base_ms=int(time.time() * 1000) - 60_000
    )

    async def scenario() -> None:
        registry = StreamRegistry()
        mqtt = MqttSettings(client_id=f"gw-{mqtt_prefix}", clean_start=True, session_expiry_s=0)
        settings = MqttSourceSettings(
            broker=mqtt, prefix=mqtt_prefix, flush_ms=60_000, ack_window=1000
        )
        source = MqttSource(settings, registry)
        got = Collector(registry)
        task = asyncio.create_task(source.run(got.emit))
        await until(lambda: connected(source), 5)
        await asyncio.sleep(0.3)
        publisher = BusPublisher(BrokerTarget(client_id=f"pub-{mqtt_prefix}"))
        publisher.start()
        publisher.publish(messages)
        assert publisher.flush(10)
        publisher.close()
        await until(lambda: source.stats.messages >= len(messages), 10)
        assert got.rows == []  # nothing flushed yet: flush_ms is a minute
        await stop(task)
        assert sorted(got.rows) == sorted(identities(messages))

    asyncio.run(scenario())


def test_a_message_is_acknowledged_only_once_stored(mqtt_prefix: str) -> None:
    """Against the shared Mosquitto: a gateway that dies before its outbox took the
    decoded messages never acknowledged them, so its next start receives them again."""
    messages = pvt_messages(
        mqtt_prefix, buses=3, per_bus=4, base_ms=int(time.time() * 1000) - 60_000
    )
    mqtt = MqttSettings(client_id=f"gw-{mqtt_prefix}", session_expiry_s=60)

    async def outbox_gone(bundle: Bundle) -> None:
        raise OSError("No space left on device")

    async def scenario() -> None:
        registry = StreamRegistry()
        first = MqttSource(MqttSourceSettings(broker=mqtt, prefix=mqtt_prefix), registry)
        task = asyncio.create_task(first.run(outbox_gone))
        await until(lambda: connected(first), 5)
        await asyncio.sleep(0.3)
        publisher = BusPublisher(BrokerTarget(client_id=f"pub-{mqtt_prefix}"))
        publisher.start()
        publisher.publish(messages)
        assert publisher.flush(10)
        publisher.close()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        assert first.stats.messages == len(messages)

        second = MqttSource(MqttSourceSettings(broker=mqtt, prefix=mqtt_prefix), registry)
        got = Collector(registry)
        task = asyncio.create_task(second.run(got.emit))
        await until(lambda: len(got.rows) >= len(messages), 10)
        await stop(task)
        assert sorted(got.rows) == sorted(identities(messages))

    asyncio.run(scenario())
