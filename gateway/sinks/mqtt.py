"""MqttSink: alerts and live vehicle status out to the control room over MQTT.

    Bundle --alerts--> <prefix>/v1/alerts/<kind>/<asset>           QoS 1, one JSON alert
           --fixes, bus readings, alerts--> StatusBoard
                   --> <prefix>/v1/vehicles/<id>/status            QoS 1, retained

A write returns once the broker has acknowledged every message, so a bundle
the broker never took is retried by the pipeline. Readings are not published:
the database holds them, and the durable record of every alert is there too;
this sink is the live feed, so the runtime gives it an in-memory queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

from gateway.bundle import Bundle
from gateway.events import Alert, jsonable
from gateway.logs import get_logger
from gateway.metrics import Measurement
from gateway.mqtt.client import MqttClient, MqttError, MqttSettings
from gateway.mqtt.topics import check_prefix
from gateway.parts import SinkUnavailable, Wiring
from gateway.sinks.mqtt_status import StatusBoard
from gateway.streams import StreamRegistry

log = get_logger("gateway.sinks.mqtt")


@dataclasses.dataclass(frozen=True, slots=True)
class MqttPublishSettings:
    broker: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    prefix: str = dataclasses.field(default="pmpml", metadata={"help": "topic prefix"})
    alerts: bool = dataclasses.field(default=True, metadata={"help": "publish every alert"})
    status: bool = dataclasses.field(
        default=True, metadata={"help": "publish the retained per-vehicle status"}
    )

    def __post_init__(self) -> None:
        check_prefix(self.prefix)


def alert_topic(prefix: str, alert: Alert) -> str:
    return f"{prefix}/v1/alerts/{alert.kind}/{alert.asset}"


def alert_payload(alert: Alert) -> bytes:
    """The alert as strict JSON (an unknown magnitude or score is null)."""
    return json.dumps({"v": 1, **jsonable(alert.to_dict())}, allow_nan=False).encode()


class MqttSink:
    def __init__(
        self, settings: MqttPublishSettings, registry: StreamRegistry, *, name: str = "mqtt"
    ) -> None:
        self.name = name
        self.settings = settings
        # a client id of its own: the broker drops an older connection with the same id
        broker = dataclasses.replace(
            settings.broker, client_id=f"{settings.broker.effective_client_id}-pub"
        )
        self.client = MqttClient(broker, topics=(), on_message=lambda topic, payload: None)
        self.board = StatusBoard(registry, settings.prefix)
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def create(cls, name: str, settings: MqttPublishSettings, wiring: Wiring) -> MqttSink:
        settings.broker.password()  # an unreadable secret stops the start, not the connect
        return cls(settings, wiring.registry, name=name)

    async def open(self) -> None:
        self._task = asyncio.create_task(self.client.run(), name=f"sink:{self.name}:client")

    async def write(self, bundle: Bundle) -> None:
        if not self.client.connected.is_set():
            raise SinkUnavailable(
                f"MQTT broker {self.settings.broker.host}:{self.settings.broker.port} "
                f"not connected ({self.client.stats.last_error or self.client.stats.state})"
            )
        messages: list[tuple[str, bytes, bool]] = []
        if self.settings.alerts:
            messages += [
                (alert_topic(self.settings.prefix, a), alert_payload(a), False)
                for a in bundle.alerts
            ]
        if self.settings.status:
            self.board.process(bundle)
            messages += [(topic, payload, True) for topic, payload in self.board.messages()]
        try:
            await asyncio.gather(
                *(self.client.publish(t, p, qos=1, retain=r) for t, p, r in messages)
            )
        except MqttError as err:
            raise SinkUnavailable(str(err)) from err
        self.published += len(messages)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def measurements(self) -> list[Measurement]:
        return [
            Measurement(
                "mqtt_published_total",
                self.published,
                "messages the broker acknowledged",
                "counter",
                (("sink", self.name),),
            ),
            Measurement(
                "mqtt_connected",
                float(self.client.connected.is_set()),
                "1 while connected to the broker",
                labels=(("sink", self.name),),
            ),
        ]
