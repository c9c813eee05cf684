"""MQTT ingest: messages/s from the broker to decoded batches, against a raw paho loop.

2,000 simulated buses (firmware_sim.buses: pvt, CAN and health as JSON) are run
forward until they have produced `--messages` messages. Our own Mosquitto runs on
a spare port. Three subscribers, one at a time, in the same run:

- raw: a paho 2.x client in its own `loop_forever` whose `on_message` only counts.
  The ceiling for any Python paho consumer.
- client: our `MqttClient` (paho on the asyncio loop) with a counting callback:
  the client's share of the cost.
- gateway: `MqttSource`: the client, plus validation, decoding into FixBatch and
  ReadingBatch columns, sequence tracking, and bundles emitted (every 2,000
  messages or 250 ms) to an emit that counts rows.

Two modes, each at QoS 0 and QoS 1, with MQTT 3.1.1 and 5:

- live: a publisher process publishes flat out while the subscriber receives, all
  on the same 2 cores (the issue's setting). Rate = received / (last arrival -
  first arrival); for the gateway, until the bundle holding the last message was
  emitted. When the subscriber is faster than the publisher this is the
  publisher's rate.
- drain: the subscriber's persistent session is created, the messages are
  published while it is away (the broker queues them), then it connects and
  drains the backlog with nothing else running: the subscriber's own capacity.

RSS is the subscriber process's peak (VmHWM) and its RSS at the end. The
broker settings are printed with the results. A last run keeps Mosquitto's
default `max_queued_messages` (1,000) with two publishers at QoS 0, and reports
the loss next to the gaps the gateway counted from the units' sequence numbers.

Usage:
    python -m bench.mqtt_ingest                       # 40,000 messages, 2 rounds
    python -m bench.mqtt_ingest --messages 20000 --rounds 1 --modes live --protocols 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pickle
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BROKER = (
    "max_queued_messages 0\n"  # no per-client queue limit: a slow subscriber is queued for
    "max_queued_bytes 0\n"
    "max_inflight_messages 0\n"  # QoS 1 to a subscriber not capped at 20 in flight
    "queue_qos0_messages true\n"  # so the drain mode can queue QoS 0 for an absent session
    "persistence false\n"
)
DEFAULTS = "persistence false\n"  # everything else as shipped: max_queued_messages 1000
ROLES = ("raw", "client", "gateway")
FILTER = "bench/v1/+/+"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_now_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """VmHWM: the peak of this process image (ru_maxrss would carry the parent's over
    fork + exec, i.e. the orchestrator's)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def paho_client(client_id: str, protocol: str, resume: bool) -> tuple[object, dict[str, object]]:
    """A paho client and the connect() keywords for a fresh or a resumed session."""
    import paho.mqtt.client as paho  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: PLC0415
    from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
    from paho.mqtt.properties import Properties  # noqa: PLC0415

    if protocol == "5":
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600 if resume else 0
        return client, {"clean_start": not resume, "properties": props}
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv311,
        clean_session=not resume,
    )
    return client, {}


# -- roles, each in its own process -----------------------------------------------------------


def role_publisher(args: argparse.Namespace) -> None:
    with open(args.messages_file, "rb") as fh:
        messages: list[tuple[str, bytes]] = pickle.load(fh)
    client, kwargs = paho_client(f"bench-pub-{os.getpid()}", "3.1.1", resume=False)
    client.max_inflight_messages_set(1000)  # type: ignore[attr-defined]
    client.max_queued_messages_set(0)  # type: ignore[attr-defined]
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish  # type: ignore[attr-defined]
    client.connect("127.0.0.1", args.port, **kwargs)  # type: ignore[attr-defined]
    client.loop_start()  # type: ignore[attr-defined]
    start = time.perf_counter()
    for i, (topic, payload) in enumerate(messages):
        client.publish(topic, payload, qos=args.qos)  # type: ignore[attr-defined]
        if args.rate and i % 100 == 99:  # paced: sleep off any lead over `rate`
            time.sleep(max(0.0, (i + 1) / args.rate - (time.perf_counter() - start)))
    while acked < len(messages):  # QoS 0 counts as published once written
        time.sleep(0.01)
    took = time.perf_counter() - start
    time.sleep(0.3)
    client.disconnect()  # type: ignore[attr-defined]
    client.loop_stop()  # type: ignore[attr-defined]
    print(json.dumps({"published": len(messages), "seconds": took}), flush=True)


def role_register(args: argparse.Namespace) -> None:
    """Create a persistent session subscribed to the data, then leave."""
    client, kwargs = paho_client(args.client_id, args.protocol, resume=True)
    done = threading.Event()
    client.on_subscribe = lambda *_: done.set()  # type: ignore[attr-defined]
    client.on_connect = lambda c, *_: c.subscribe(FILTER, qos=args.qos)  # type: ignore[attr-defined]
    client.connect("127.0.0.1", args.port, **kwargs)  # type: ignore[attr-defined]
    client.loop_start()  # type: ignore[attr-defined]
    if not done.wait(10):
        raise SystemExit("no SUBACK")
    client.disconnect()  # type: ignore[attr-defined]
    client.loop_stop()  # type: ignore[attr-defined]


def role_raw(args: argparse.Namespace) -> None:
    client, kwargs = paho_client(
        args.client_id or f"bench-raw-{os.getpid()}", args.protocol, args.resume
    )
    count = 0
    first = last = 0.0

    def on_message(_c: object, _u: object, _m: object) -> None:
        nonlocal count, first, last
        last = time.perf_counter()
        if count == 0:
            first = last
        count += 1
        if count >= args.expect:
            client.disconnect()  # type: ignore[attr-defined]

    def on_connect(c: object, *_: object) -> None:
        c.subscribe(FILTER, qos=args.qos)  # type: ignore[attr-defined]
        if args.resume:  # the backlog flows at once, perhaps before the SUBACK
            print("ready", flush=True)

    def watchdog() -> None:  # stop when the stream dries up short of `expect`
        while True:
            time.sleep(0.5)
            if count and time.perf_counter() - last > args.idle:
                client.disconnect()  # type: ignore[attr-defined]
                return

    client.on_message = on_message  # type: ignore[attr-defined]
    client.on_connect = on_connect  # type: ignore[attr-defined]
    if not args.resume:
        client.on_subscribe = lambda *_: print("ready", flush=True)  # type: ignore[attr-defined]
    client.connect("127.0.0.1", args.port, **kwargs)  # type: ignore[attr-defined]
    threading.Thread(target=watchdog, daemon=True).start()
    client.loop_forever()  # type: ignore[attr-defined]
    result = {"received": count, "seconds": last - first, "rss_peak_mb": peak_rss_mb()}
    result["rss_end_mb"] = rss_now_mb()
    print(json.dumps(result), flush=True)


def _mqtt_settings(args: argparse.Namespace) -> object:
    from gateway.mqtt.client import MqttSettings  # noqa: PLC0415

    return MqttSettings(
        protocol=args.protocol,
        port=args.port,
        client_id=args.client_id or f"bench-gw-{os.getpid()}",
        qos=args.qos,
        clean_start=not args.resume,
        session_expiry_s=3600 if args.resume else 0,
    )


def role_client(args: argparse.Namespace) -> None:
    from gateway.logs import configure_logging  # noqa: PLC0415
    from gateway.mqtt.client import MqttClient  # noqa: PLC0415

    configure_logging(level="warning")

    async def main() -> dict[str, float]:
        count = 0
        first = last = 0.0

        def on_message(_t: str, _p: bytes) -> None:
            nonlocal count, first, last
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1

        client = MqttClient(_mqtt_settings(args), [FILTER], on_message)  # type: ignore[arg-type]
        task = asyncio.create_task(client.run())
        await client.connected.wait()
        print("ready", flush=True)
        while count < args.expect:
            await asyncio.sleep(0.05)
            if count and time.perf_counter() - last > args.idle:
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return {
            "received": count,
            "seconds": last - first,
            "rss_peak_mb": peak_rss_mb(),
            "rss_end_mb": rss_now_mb(),
        }

    print(json.dumps(asyncio.run(main())), flush=True)


def role_gateway(args: argparse.Namespace) -> None:
    from gateway.bundle import Bundle  # noqa: PLC0415
    from gateway.drivers.mqtt.source import MqttSource, MqttSourceSettings  # noqa: PLC0415
    from gateway.logs import configure_logging  # noqa: PLC0415
    from gateway.streams import StreamRegistry  # noqa: PLC0415

    configure_logging(level="warning")

    class TimedSource(MqttSource):
        first = 0.0

        def handle(self, topic: str, payload: bytes) -> None:
            if not self.first:
                self.first = time.perf_counter()
            super().handle(topic, payload)

    async def main() -> dict[str, float]:
        registry = StreamRegistry()
        # the broker here runs with max_inflight_messages 0, so acks may wait a whole flush
        settings = MqttSourceSettings(broker=_mqtt_settings(args), prefix="bench", ack_window=2000)  # type: ignore[arg-type]
        source = TimedSource(settings, registry)
        rows = 0
        last = 0.0

        async def emit(bundle: Bundle) -> None:
            nonlocal rows, last
            rows += len(bundle.fixes) + len(bundle.readings) + len(bundle.events)
            last = time.perf_counter()

        task = asyncio.create_task(source.run(emit))
        while source.client is None or not source.client.connected.is_set():
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        idle_since, seen = time.perf_counter(), 0
        while source.stats.messages < args.expect:
            await asyncio.sleep(0.05)
            if source.stats.messages != seen:
                seen, idle_since = source.stats.messages, time.perf_counter()
            elif seen and time.perf_counter() - idle_since > args.idle:
                break
        done = source.stats.messages
        while source._pending:  # until the bundle holding the last message is emitted
            await asyncio.sleep(0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        seq = source.sequences.stats
        return {
            "received": done,
            "seconds": last - source.first,
            "rows": rows,
            "rejects": sum(source.stats.rejects.values()),
            "gaps": seq.gaps,
            "duplicates": seq.duplicates,
            "rss_peak_mb": peak_rss_mb(),
            "rss_end_mb": rss_now_mb(),
        }

    print(json.dumps(asyncio.run(main())), flush=True)


# -- the orchestrator ---------------------------------------------------------------------------


def make_messages(
    buses: int, count: int, seed: int
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """`count` messages, and then each topic's next message (which makes any loss
    before it visible as a gap in the unit's sequence numbers)."""
    from firmware_sim.buses.fleet import Fleet, FleetSettings  # noqa: PLC0415
    from firmware_sim.buses.routes import PmpmlRoutes  # noqa: PLC0415

    start_ms = int(time.time() * 1000) - 3 * 3600 * 1000  # in the past, inside the window
    settings = FleetSettings(buses=buses, seed=seed, start_ms=start_ms, prefix="bench")
    fleet = Fleet(settings, PmpmlRoutes())
    out: list[tuple[str, bytes]] = []
    while len(out) < count:
        out.extend((m.topic, m.payload) for m in fleet.advance(1.0))
    out, extra = out[:count], out[count:]
    topics = {t for t, _ in out}
    followups: dict[str, bytes] = {}
    while True:
        for topic, payload in extra:
            if topic in topics:
                followups.setdefault(topic, payload)
        if len(followups) == len(topics):
            return out, list(followups.items())
        extra = [(m.topic, m.payload) for m in fleet.advance(1.0)]


def start_broker(folder: Path, settings: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / f"mosquitto-{port}.conf"
    user = f"user {os.environ.get('USER', 'root')}\n"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{user}{settings}")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
            return proc, port
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def split_by_vehicle(
    messages: list[tuple[str, bytes]], parts: int
) -> list[list[tuple[str, bytes]]]:
    """Disjoint shares of the fleet, each unit's messages in order within one share."""
    out: list[list[tuple[str, bytes]]] = [[] for _ in range(parts)]
    for topic, payload in messages:
        out[int(topic.split("/")[2].rsplit("-", 1)[1]) % parts].append((topic, payload))
    return out


ME = [sys.executable, "-m", "bench.mqtt_ingest"]


def _publish(port: int, qos: int, files: list[Path], rate: float = 0.0) -> None:
    common = ["--port", str(port), "--qos", str(qos), "--rate", str(rate)]
    pubs = [
        subprocess.Popen([*ME, "--role", "pub", *common, "--messages-file", str(f)],
                         stdout=subprocess.DEVNULL)
        for f in files
    ]  # fmt: skip
    for pub in pubs:
        if pub.wait(600) != 0:
            raise RuntimeError("a publisher failed")


def run_one(
    role: str,
    qos: int,
    protocol: str,
    *,
    port: int,
    files: list[Path],
    expect: int,
    drain: bool,
    then: Path | None = None,
) -> dict[str, float]:
    common = ["--port", str(port), "--qos", str(qos), "--protocol", protocol]
    client_id = f"bench-{role}-{protocol}-{qos}-{time.monotonic_ns()}"
    if drain:
        subprocess.run([*ME, "--role", "register", *common, "--client-id", client_id], check=True)
        _publish(port, qos, files)
        common += ["--client-id", client_id, "--resume"]
    sub = subprocess.Popen(
        [*ME, "--role", role, *common, "--expect", str(expect)], stdout=subprocess.PIPE, text=True
    )
    assert sub.stdout is not None
    line = sub.stdout.readline().strip()
    if line != "ready":
        sub.kill()
        raise RuntimeError(f"{role} subscriber did not start: {line!r}")
    if not drain:
        _publish(port, qos, files)
    if then is not None:  # after the flood, at a pace the subscriber keeps up with
        _publish(port, qos, [then], rate=2000.0)
    out, _ = sub.communicate(timeout=600)
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def orchestrate(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    messages, followups = make_messages(args.buses, args.messages, args.seed)
    n = len(messages)
    kinds: dict[str, int] = {}
    for topic, _ in messages:
        kinds[topic.rsplit("/", 1)[1]] = kinds.get(topic.rsplit("/", 1)[1], 0) + 1
    size = sum(len(p) for _, p in messages) / n
    print(
        f"{n:,} messages from {args.buses:,} simulated buses "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}; "
        f"mean payload {size:.0f} B), generated in {time.perf_counter() - t0:.1f} s"
    )
    print(f"machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    protocols = args.protocols.split(",")
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        whole = folder / "messages.pickle"
        with whole.open("wb") as fh:
            pickle.dump(messages, fh)
        broker, port = start_broker(folder, BROKER)
        print(f"broker: Mosquitto on loopback; {BROKER.strip().replace(chr(10), '; ')}")
        table: list[tuple[str, str, int, str, list[dict[str, float]]]] = []
        try:
            for mode in modes:
                for protocol in protocols:
                    for qos in (0, 1):
                        runs: dict[str, list[dict[str, float]]] = {r: [] for r in ROLES}
                        for _ in range(args.rounds):
                            for role in ROLES:
                                result = run_one(
                                    role, qos, protocol, port=port, files=[whole], expect=n,
                                    drain=mode == "drain",
                                )  # fmt: skip
                                runs[role].append(result)
                        table.extend((mode, protocol, qos, r, runs[r]) for r in ROLES)
        finally:
            broker.terminate()
            broker.wait()
        print()
        print("| mode | MQTT | QoS | subscriber | received | msg/s (median) | runs | vs raw "
              "| RSS peak / end MB |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        raw: dict[tuple[str, str, int], float] = {}
        for mode, protocol, qos, role, runs_ in table:
            rates = [r["received"] / r["seconds"] for r in runs_]
            med = statistics.median(rates)
            if role == "raw":
                raw[(mode, protocol, qos)] = med
            received = min(int(r["received"]) for r in runs_)
            peak = max(r["rss_peak_mb"] for r in runs_)
            end = max(r["rss_end_mb"] for r in runs_)
            print(
                f"| {mode} | {protocol} | {qos} | {role} | {received:,}/{n:,} | {med:,.0f} | "
                + ", ".join(f"{x:,.0f}" for x in rates)
                + f" | {med / raw[(mode, protocol, qos)]:.0%} | {peak:.0f} / {end:.0f} |"
            )
        gw = [r for *_, role, runs_ in table if role == "gateway" for r in runs_]
        print(
            f"\ngateway runs: rejects {sum(int(r['rejects']) for r in gw)}, gaps counted "
            f"{sum(int(r['gaps']) for r in gw)}, decoded rows per run {int(gw[-1]['rows']):,}"
        )
        if args.defaults_run:
            files = []
            for k, share in enumerate(split_by_vehicle(messages, 2)):
                files.append(folder / f"share{k}.pickle")
                with files[-1].open("wb") as fh:
                    pickle.dump(share, fh)
            then = folder / "followups.pickle"
            with then.open("wb") as fh:
                pickle.dump(followups, fh)
            broker, port = start_broker(folder, DEFAULTS)
            try:
                sub = run_one(
                    "gateway", 0, protocols[-1], port=port, files=files,
                    expect=n + len(followups), drain=False, then=then,
                )  # fmt: skip
            finally:
                broker.terminate()
                broker.wait()
            sent = n + len(followups)
            lost = sent - int(sub["received"])
            print(
                f"\nMosquitto's defaults (max_queued_messages 1000), QoS 0: two publishers "
                f"flat out, then each of the {len(followups):,} topics' next message at "
                f"2,000 msg/s; gateway subscriber received {int(sub['received']):,}/{sent:,}, "
                f"lost {lost:,} ({lost / sent:.1%}); gaps counted from the units' sequence "
                f"numbers: {int(sub['gaps']):,}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--role",
        choices=["orchestrate", "pub", "register", *ROLES],
        default="orchestrate",
    )
    parser.add_argument("--buses", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="live,drain")
    parser.add_argument("--protocols", default="3.1.1,5")
    parser.add_argument("--no-defaults-run", dest="defaults_run", action="store_false")
    # for the subscriber and publisher roles
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--qos", type=int, default=0)
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--client-id", default="")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--idle", type=float, default=3.0)
    parser.add_argument("--messages-file", default="")
    parser.add_argument("--rate", type=float, default=0.0, help="publisher: msg/s, 0 flat out")
    args = parser.parse_args()
    roles = {"orchestrate": orchestrate, "pub": role_publisher, "register": role_register}
    roles.update(raw=role_raw, client=role_client, gateway=role_gateway)
    roles[args.role](args)


if __name__ == "__main__":
    main()
