"""kill -9 under live load: every published position is stored once, under its own bus.

    python -m bench.kill9 [--runs 3] [--kill-at 25] [--down 15] [--publish 60]

The experiment of issue 13, as an operator would run it: one `gateway run` on
the example config (the Modbus simulator and 20 simulated buses at QoS 1),
killed with SIGKILL `--kill-at` seconds into the run and restarted `--down`
seconds later. A recorder subscribed to the same topics keeps every `pvt` that
was published. The broker is a Mosquitto of the run's own, set up as
gateway/drivers/mqtt/README.md asks (`max_queued_messages 0`), so that it
queues the gateway's QoS 1 messages while the gateway is down.

Each run reports positions published, stored, stored under a (bus, ts) that
was never published ("extra"), and published but not stored ("missing"), and
the readings stored; the baseline is the recorder's own record of what was
published, in the same run. (That each reading keeps its stream across a
restart in a new order is tests/pipeline/test_restart_order.py.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def config_text(mqtt_port: int, dsn: str, outbox: Path, modbus_base: int, gw_id: str) -> str:
    text = (ROOT / "config" / "gateway.example.toml").read_text()
    swaps = [
        ("port = 1883", f"port = {mqtt_port}", 2),
        ('dsn = "postgresql://postgres@127.0.0.1:5432/gateway"', f'dsn = "{dsn}"', 1),
        ('directory = "var/outbox"', f'directory = "{outbox}"', 1),
        ("tcp_port = 5020", f"tcp_port = {modbus_base}", 1),
        ("tcp_port = 5021", f"tcp_port = {modbus_base + 1}", 1),
        ('client_id = "pune-dma-gw-01"', f'client_id = "{gw_id}"', 2),
        ('\nid = "pune-dma-gw-01"', f'\nid = "{gw_id}"', 1),
        ("[metrics]\nenabled = true", "[metrics]\nenabled = false", 1),
        ('profiles_dir = "config/profiles"', f'profiles_dir = "{ROOT / "config/profiles"}"', 1),
    ]
    for old, new, count in swaps:
        if text.count(old) != count:
            raise SystemExit(f"config/gateway.example.toml changed: expected {old!r} {count}x")
        text = text.replace(old, new)
    return text


def published(path: Path) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for line in path.read_text().splitlines():
        topic, _, payload = line.partition(" ")
        body = json.loads(payload)
        out.add((topic.split("/")[2], int(body["ts"])))
    return out


def stored(dsn: str) -> tuple[set[tuple[str, int]], int]:
    with psycopg.connect(dsn, connect_timeout=10, options="-c statement_timeout=30000") as conn:
        fixes = conn.execute(
            "SELECT v.name, (extract(epoch FROM p.ts) * 1000)::bigint FROM vehicle_positions p "
            "JOIN vehicles v ON v.id = p.vehicle"
        ).fetchall()
        (readings,) = conn.execute("SELECT count(*) FROM readings").fetchone() or (0,)
    return {(v, int(t)) for v, t in fixes}, int(readings)


def start(cmd: list[str], log: Path, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, **kw)  # type: ignore[call-overload,no-any-return]


def one_run(args: argparse.Namespace, k: int, tmp: Path) -> dict[str, int]:
    mqtt_port, modbus_base = free_port(), free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    name = f"gw_kill9_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(args.dsn, dbname=name)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*GATEWAY, "db", "migrate", "--dsn", dsn], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        broker = start(["mosquitto", "-c", str(conf)], tmp / "mosquitto.log")
        procs.append(broker)
        wait_port(mqtt_port)
        water = start([*GATEWAY, "sim", "water", "--port-base", str(modbus_base)],
                      tmp / "water.log")  # fmt: skip
        procs.append(water)
        wait_port(modbus_base)
        record = tmp / "pvt.txt"
        recorder = subprocess.Popen(
            ["mosquitto_sub", "-p", str(mqtt_port), "-q", "1", "-t", "pmpml/v1/+/pvt",
             "-F", "%t %p"],
            stdout=record.open("wb"),
        )  # fmt: skip
        procs.append(recorder)
        toml = tmp / "gateway.toml"
        toml.write_text(config_text(mqtt_port, dsn, tmp / "outbox", modbus_base, f"gw-k9-{k}"))
        gateway = start([*GATEWAY, "run", "-c", str(toml)], tmp / "gateway.log")
        time.sleep(3)  # subscribed, with its persistent session, before the buses start
        buses = start(
            [*GATEWAY, "sim", "buses", "--buses", "20", "--qos", "1", "--port", str(mqtt_port),
             "--duration", str(args.publish), "--seed", str(k)],
            tmp / "buses.log",
        )  # fmt: skip
        procs.append(buses)
        time.sleep(args.kill_at)
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        print(f"  run {k}: killed -9 at {args.kill_at} s; restarting in {args.down} s", flush=True)
        time.sleep(args.down)
        gateway = start([*GATEWAY, "run", "-c", str(toml)], tmp / "gateway.log")
        buses.wait(timeout=args.publish + 120)
        last, still = -1, 0
        while still < 8:  # settled: no new position for 8 s (Modbus readings never stop)
            time.sleep(1)
            now = len(stored(dsn)[0])
            still = still + 1 if now == last else 0
            last = now
        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(timeout=60)
        recorder.terminate()
        recorder.wait()
        sent = published(record)
        got, readings = stored(dsn)
        return {
            "published": len(sent),
            "stored": len(got),
            "extra": len(got - sent),
            "missing": len(sent - got),
            "readings": readings,
            "exit": code,
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs (default: 3)")
    p.add_argument("--dsn", default=os.environ.get("GATEWAY_TEST_PG",
                   "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="PostgreSQL server; each run makes and drops its own database")  # fmt: skip
    p.add_argument("--kill-at", type=float, default=25.0, help="seconds (default: 25)")
    p.add_argument("--down", type=float, default=15.0, help="seconds (default: 15)")
    p.add_argument("--publish", type=float, default=60.0, help="bus seconds (default: 60)")
    args = p.parse_args()
    print("run  published  stored  extra  missing  readings  exit")
    bad = 0
    for k in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="gw-kill9-") as tmp:
            r = one_run(args, k, Path(tmp))
        print(f"{k:>3}  {r['published']:>9}  {r['stored']:>6}  {r['extra']:>5}  "
              f"{r['missing']:>7}  {r['readings']:>8}  {r['exit']:>4}",
              flush=True)  # fmt: skip
        bad += bool(r["extra"] or r["missing"] or r["exit"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
