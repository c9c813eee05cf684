"""An MQTT subscriber on paho-mqtt 2.x that lives on the asyncio loop and never gives up.

    broker ==TCP/TLS==> socket --add_reader--> paho loop_read --on_message(topic, payload)--> caller
                                 <-add_writer-- paho loop_write (PUBACKs, PINGREQ, SUBSCRIBE)
                        every 1 s: paho loop_misc (keepalive)

paho runs on the loop through its socket callbacks, as aiomqtt does, so there is
no thread to hand messages across and nothing to lose in between: a message is
handed to `on_message` inside `loop_read`, and paho acknowledges a QoS 1 message
only after `on_message` returns. `pause()` stops reading the socket, which pushes
back on the broker through TCP instead of buffering without bound.

`run()` connects (MQTT 5, falling back to 3.1.1 when the broker refuses 5),
subscribes, waits for the connection to drop, and reconnects after a capped,
jittered backoff, forever. The state is in `stats` and in one log line per change.
The session is persistent (clean start off, a session expiry), so QoS 1 messages
published while the gateway is away are kept by the broker and delivered on return.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.backoff import Backoff
from gateway.logs import get_logger

log = get_logger("gateway.mqtt")

OnMessage = Callable[[str, bytes], None]
Protocol = Literal["auto", "5", "3.1.1"]
_READ_BURST = 512  # packets read per wake-up before yielding to the loop
_UNSUPPORTED_PROTOCOL = (132, 1)  # MQTT 5 reason code, MQTT 3.1.1 CONNACK return code


@dataclasses.dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: str = dataclasses.field(metadata={"help": "CA bundle that signed the broker's cert"})
    cert_file: str | None = dataclasses.field(
        default=None, metadata={"help": "client certificate (PEM), when the broker asks for one"}
    )
    key_file: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = dataclasses.field(
        default="",
        metadata={"help": "stable id for the persistent session; default gateway-<hostname>"},
    )
    protocol: Protocol = "auto"
    qos: Literal[0, 1] = 1
    keepalive_s: int = 30
    session_expiry_s: int = dataclasses.field(
        default=86_400, metadata={"help": "how long the broker keeps our queue while we are away"}
    )
    clean_start: bool = False
    share_group: str = dataclasses.field(
        default="", metadata={"help": "join $share/<group>/... to split the fleet with peers"}
    )
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    tls: TlsSettings | None = None
    connect_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port")
        if self.protocol not in ("auto", "5", "3.1.1"):
            raise ValueError('protocol must be "auto", "5" or "3.1.1"')
        if self.share_group and any(c in self.share_group for c in "/+#"):
            raise ValueError("share_group must not contain '/', '+' or '#'")
        if self.reconnect_initial_s <= 0 or self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("need 0 < reconnect_initial_s <= reconnect_max_s")
        if self.tls is not None and (self.tls.cert_file is None) != (self.tls.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file go together")

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"gateway-{socket.gethostname()}"

    def password(self) -> str | None:
        # gateway.config imports these settings to compose its own: import it late
        from gateway.config import read_secret  # noqa: PLC0415

        return read_secret(self.password_env, self.password_file, what="MQTT password")


@dataclasses.dataclass(slots=True)
class ClientStats:
    state: str = "idle"  # idle, connecting, connected, backoff, stopped
    connects: int = 0  # successful CONNACKs
    connect_failures: int = 0
    disconnects: int = 0  # connections lost after CONNACK
    messages: int = 0
    session_present: bool = False
    protocol: str = ""
    last_error: str = ""
    pauses: int = 0


class MqttError(ConnectionError):
    """The broker refused or dropped us; `run` handles it by backing off."""


class MqttClient:
    """Subscribes to `topics` and hands each message to `on_message`, on the running loop."""

    def __init__(
        self, settings: MqttSettings, topics: Sequence[str], on_message: OnMessage
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.on_message = on_message
        self.stats = ClientStats()
        self._protocol: Protocol = "5" if settings.protocol == "auto" else settings.protocol
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._sock: Any = None
        self._writing = False
        self._paused = False
        self._connack: asyncio.Future[tuple[int, bool]] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}  # mid -> PUBACK of our publishes
        self._received: list[int] = []  # QoS 1 messages handed on, not yet acknowledged
        self.connected = asyncio.Event()

    # -- the public surface -------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stay connected, reconnect; returns only by cancellation."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        backoff = Backoff(self.settings.reconnect_initial_s, self.settings.reconnect_max_s)
        attempt = 0
        try:
            while True:
                try:
                    await self._connect()
                except (OSError, MqttError, TimeoutError, ssl.SSLError) as err:
                    self._teardown()
                    self.stats.connect_failures += 1
                    self.stats.last_error = f"{type(err).__name__}: {err}"
                    delay = backoff.delay(attempt)
                    attempt += 1
                    self._set_state("backoff", error=self.stats.last_error, retry_in_s=delay)
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                misc = asyncio.ensure_future(self._misc())
                try:
                    assert self._lost is not None
                    reason = await self._lost
                finally:
                    misc.cancel()
                self.stats.disconnects += 1
                self.stats.last_error = reason
                self._teardown()
                delay = backoff.delay(0)
                self._set_state("backoff", error=reason, retry_in_s=delay)
                await asyncio.sleep(delay)
        finally:
            self._close()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; at QoS 1 return once the broker has acknowledged it. Raises
        MqttError when not connected, or when the connection drops first."""
        client = self._client
        if client is None or self._loop is None or not self.connected.is_set():
            raise MqttError("not connected to the broker")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        # the PUBACK is read in _readable, on this loop, so it cannot beat this line
        ack = self._acks[info.mid] = self._loop.create_future()
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await ack
        except TimeoutError as err:
            raise MqttError(
                f"no PUBACK for {topic} within {self.settings.connect_timeout_s} s"
            ) from err
        finally:
            self._acks.pop(info.mid, None)

    @property
    def unacked(self) -> int:
        return len(self._received)

    def take_received(self) -> list[int]:
        """The ids of the QoS 1 messages handed to `on_message` since the last call."""
        received, self._received = self._received, []
        return received

    def ack(self, mids: Sequence[int]) -> None:
        """Acknowledge messages the caller has made safe (in the outbox). Until then the
        broker keeps them in our session and sends them again after a reconnect, so a
        crash between decoding and storing loses nothing; the sinks' natural keys make
        the second copy harmless. Ids from a connection that dropped are skipped: the
        broker resends those messages anyway."""
        client = self._client
        if client is None or not self.connected.is_set():
            return
        for mid in mids:
            client.ack(mid, 1)

    def pause(self) -> None:
        """Stop reading: the broker holds (or, past its limits, drops) what comes next."""
        if not self._paused:
            self._paused = True
            self.stats.pauses += 1
            if self._sock is not None and self._loop is not None:
                self._loop.remove_reader(self._sock)

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._sock is not None and self._loop is not None:
                self._loop.add_reader(self._sock, self._readable)
                self._loop.call_soon(self._readable)

    # -- connecting ---------------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self.settings
        v5 = self._protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.effective_client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else s.clean_start,
            manual_ack=True,  # PUBACK only once the caller has stored the message: see ack_received
        )
        client.connect_timeout = s.connect_timeout_s
        if s.username is not None:
            client.username_pw_set(s.username, s.password())
        if s.tls is not None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.tls.ca_file)
            if s.tls.cert_file is not None:
                context.load_cert_chain(s.tls.cert_file, s.tls.key_file)
            client.tls_set_context(context)  # verifies the chain and that the cert names `host`
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        return client

    async def _connect(self) -> None:
        loop = self._loop
        assert loop is not None
        s = self.settings
        if self._client is None:
            self._client = self._make_client()
        client = self._client
        self._connack = loop.create_future()
        self._lost = loop.create_future()
        self._set_state("connecting", host=s.host, port=s.port, protocol=self._protocol)
        properties = None
        if self._protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = s.session_expiry_s
        kwargs: dict[str, Any] = {"properties": properties}
        if self._protocol == "5":
            kwargs["clean_start"] = s.clean_start
        # connect() resolves, connects and shakes hands (TLS) in blocking calls: off the loop
        async with asyncio.timeout(s.connect_timeout_s):
            await loop.run_in_executor(
                None, lambda: client.connect(s.host, s.port, s.keepalive_s, **kwargs)
            )
        async with asyncio.timeout(s.connect_timeout_s):
            code, session_present = await asyncio.shield(self._connack)
        if code != 0:
            refused_v5 = self._protocol == "5" and code in _UNSUPPORTED_PROTOCOL
            if self.settings.protocol == "auto" and refused_v5:
                log.warning("mqtt.protocol_fallback", host=s.host, to="3.1.1")
                self._protocol = "3.1.1"
                self._client = None
                raise MqttError("broker refused MQTT 5; retrying with 3.1.1")
            raise MqttError(f"connection refused: {paho.connack_string(code)} ({code})")
        self.stats.connects += 1
        self.stats.session_present = session_present
        self.stats.protocol = self._protocol
        self.connected.set()
        self._set_state(
            "connected",
            host=s.host,
            port=s.port,
            protocol=self._protocol,
            session_present=session_present,
        )

    def _subscribe(self, client: paho.Client) -> None:
        if not self.topics:  # a publish-only client
            return
        qos = self.settings.qos
        if self._protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=qos)) for t in self.topics])
        else:
            client.subscribe([(t, int(qos)) for t in self.topics])

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._client is not None:
                self._client.loop_misc()

    def _teardown(self) -> None:
        """Forget the socket after a failure; the paho client (and its session) stays."""
        self.connected.clear()
        self._received.clear()  # the broker sends these again on the next connection
        self._unwatch()

    def _close(self) -> None:
        client = self._client
        if client is not None and self.connected.is_set():
            client.disconnect()
            if client.want_write():
                client.loop_write()
        self._teardown()
        sock = client.socket() if client is not None else None
        if sock is not None:
            sock.close()
        self._set_state("stopped")

    def _set_state(self, state: str, **fields: Any) -> None:
        self.stats.state = state
        if state == "backoff":
            log.warning("mqtt.state", state=state, **fields)
        else:
            log.info("mqtt.state", state=state, **fields)

    # -- paho callbacks (always on the loop, except socket callbacks during connect) ---

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        code = reason.value if isinstance(reason, ReasonCode) else int(reason)
        if code == 0:
            self._subscribe(client)
        self._call(self._resolve_connack, code, bool(flags.session_present))

    def _resolve_connack(self, code: int, session_present: bool) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result((code, session_present))

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._call(self._resolve_lost, str(reason))

    def _resolve_lost(self, reason: str) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        for ack in self._acks.values():
            if not ack.done():
                ack.set_exception(MqttError(f"connection lost before PUBACK: {reason}"))
                ack.exception()  # retrieved here so an abandoned future does not warn
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(MqttError(f"connection closed before CONNACK: {reason}"))
            self._connack.exception()  # retrieved here so an abandoned future does not warn

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self.stats.messages += 1
        if message.qos > 0:
            self._received.append(message.mid)
        try:
            topic = message.topic
        except UnicodeDecodeError:  # MQTT requires UTF-8 topics; let the caller refuse it
            topic = "\ufffd"
        self.on_message(topic, bytes(message.payload))

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        ack = self._acks.get(mid)
        if ack is not None and not ack.done():
            ack.set_result(None)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self._watch, sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self._unwatch)

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self._want_write, True)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._call(self._want_write, False)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn` on the loop: now if we are on it, else through call_soon_threadsafe."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(fn, *args)

    # -- socket plumbing (loop thread only) --------------------------------------------

    def _watch(self, sock: Any) -> None:
        assert self._loop is not None
        self._unwatch()
        self._sock = sock
        if not self._paused:
            self._loop.add_reader(sock, self._readable)
        if self._client is not None and self._client.want_write():
            self._want_write(True)

    def _unwatch(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock)
            self._loop.remove_writer(self._sock)
        self._sock = None
        self._writing = False

    def _want_write(self, want: bool) -> None:
        if self._sock is None or self._loop is None or want == self._writing:
            return
        self._writing = want
        if want:
            self._loop.add_writer(self._sock, self._writable)
        else:
            self._loop.remove_writer(self._sock)

    def _readable(self) -> None:
        client = self._client
        if client is None or self._sock is None:
            return
        for _ in range(_READ_BURST):
            if self._paused or self._sock is None:
                return
            before = self.stats.messages
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self.stats.messages == before:
                break
        sock = self._sock
        # TLS may hold decrypted bytes the selector cannot see; and a full burst may not be all
        pending = sock.pending() if sock is not None and hasattr(sock, "pending") else 0
        if sock is not None and not self._paused and (pending or self.stats.messages != before):
            assert self._loop is not None
            self._loop.call_soon(self._readable)

    def _writable(self) -> None:
        if self._client is not None:
            self._client.loop_write()
