"""Publishing simulated traffic to a broker with paho (in paho's own thread).

The simulator plays many units over one connection. QoS 1 messages published
while the broker is away stay in paho's queue and go out after it reconnects,
with a persistent session, so a broker restart loses nothing on this side.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from firmware_sim.buses.fleet import Message


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerTarget:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password_env: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    max_inflight: int = 1000


class BusPublisher:
    def __init__(self, target: BrokerTarget) -> None:
        self.target = target
        client_id = target.client_id or f"gwsim-buses-{os.getpid()}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(target.max_inflight)
        self.client.max_queued_messages_set(0)  # unlimited: never drop on our side
        self.client.reconnect_delay_set(1, 2)
        if target.username is not None:
            password = os.environ.get(target.password_env) if target.password_env else None
            self.client.username_pw_set(target.username, password)
        if target.ca_file is not None:
            self.client.tls_set(target.ca_file, target.cert_file, target.key_file)
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.published = 0
        self._sent_qos1 = 0
        self._acked = 0  # PUBACKs, counted in paho's thread

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if not getattr(rc, "is_failure", False):
            self.connected.set()

    def _on_disconnect(
        self, client: paho.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        self.connected.clear()

    def _on_publish(
        self, client: paho.Client, _u: object, mid: int, rc: object, _p: object
    ) -> None:
        self._acked += 1

    def start(self, timeout: float = 10.0) -> None:
        self.client.connect_async(
            self.target.host, self.target.port, keepalive=30, clean_start=False
        )
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.client.loop_stop()
            raise ConnectionError(f"no connection to {self.target.host}:{self.target.port}")

    def publish(self, messages: Iterable[Message]) -> int:
        n = 0
        for m in messages:
            # while disconnected paho queues QoS 1 messages and sends them on reconnect
            self.client.publish(m.topic, m.payload, qos=m.qos)
            self._sent_qos1 += m.qos > 0
            n += 1
        self.published += n
        return n

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every QoS 1 message is acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while self._acked < self._sent_qos1 and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._acked >= self._sent_qos1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
