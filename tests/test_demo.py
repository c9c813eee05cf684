"""`gateway demo`, run as a user would."""

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


DEFAULT_FAULTS = {
    "leak 3 L/s on dma-01": "leak dma-01",
    "burst 10 L/s on dma-02": "burst dma-02",
    "overheat on bus/MH12-PM-0001": "engine_overheat bus/MH12-PM-0001",
    "panic on bus/MH12-PM-0002": "panic bus/MH12-PM-0002",
    "gps jump on bus/MH12-PM-0003": "gps_jump bus/MH12-PM-0003",
    "dtc on bus/MH12-PM-0004": "dtc bus/MH12-PM-0004",
    "panic on AIS-140 unit on bus/MH12-PM-0011": "panic bus/MH12-PM-0011",
}


def fault_table(out: str) -> dict[str, list[str]]:
    """The closing table: fault -> [injected, alert, detected at, after], split on its
    column starts (the header's words)."""
    lines = out.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("Injected faults"))
    head = lines[first + 1]
    starts = [head.index(word) for word in ("fault", "injected", "alert", "detected", "after")]
    rows: dict[str, list[str]] = {}
    for line in lines[first + 2 :]:
        if not line.startswith("  "):
            break
        ends = [*starts[1:], len(line)]
        cells = [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]
        rows[cells[0]] = cells[1:]
    return rows


def test_a_default_run_catches_every_injected_fault(pg_dsn: str, tmp_path: Path) -> None:
    result = demo("--duration", "30", "--dsn", pg_dsn, "--sqlite", str(tmp_path / "x.sqlite"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ready (postgres mode)" in out
    assert re.search(r"meters 4/4 up", out), out
    done = re.search(r"(\d+) readings emitted \([\d.]+/s\); (\d+) readings of this run in", out)
    assert done, out
    assert int(done[1]) == int(done[2]) > 0, "every reading emitted is stored, once"
    assert "0 rows left in the outbox" in out
    assert not (tmp_path / "x.sqlite").exists()
    table = fault_table(out)
    assert set(table) == set(DEFAULT_FAULTS), out
    for fault, (injected, alert, detected, after) in table.items():
        assert alert == DEFAULT_FAULTS[fault], f"{fault}: {alert}\n{out}"
        clock = "sim 600x" if "dma-" in fault else "wall"
        assert injected.endswith(f"IST {clock}") and detected.endswith(f"IST {clock}"), fault
        assert after != "-", fault
    # each alert line says which clock its time is on
    assert re.search(r"ALERT opened  warning  burst +dma-02 +\w{3} [\d:]{8} IST sim 600x ", out)
    assert re.search(r"ALERT opened  critical panic +bus/\S+ +\w{3} [\d:]{8} IST wall ", out)
    # the command it prints lists this run's alerts
    command = re.search(r"List this run's alerts: (gateway alerts .*)$", out, re.MULTILINE)
    assert command, out
    argv = shlex.split(command[1])
    assert argv[:2] == ["gateway", "alerts"]
    listed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv[1:], "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    kinds = {json.loads(line)["kind"] for line in listed.stdout.splitlines()}
    assert {"leak", "burst", "engine_overheat", "panic", "gps_jump", "dtc"} <= kinds, listed.stdout


def test_demo_falls_back_to_sqlite_and_says_so(tmp_path: Path) -> None:
    store = tmp_path / "demo.sqlite"
    result = demo(
        "--duration",
        "3",
        "--buses",
        "0",
        "--ais140",
        "0",
        "--dsn",
        "postgresql://postgres@127.0.0.1:1/x",
        "--sqlite",
        str(store),
    )
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL is not reachable" in result.stdout
    assert f"embedded SQLite store {store}" in result.stdout
    done = re.search(r"(\d+) readings of this run in", result.stdout)
    assert done and int(done[1]) > 0
    assert store.exists()
    assert f"alerts are in the SQLite store: sqlite3 {store}" in result.stdout
    table = fault_table(result.stdout)
    assert set(table) == {"leak 3 L/s on dma-01", "burst 10 L/s on dma-02"}


def test_demo_until_ctrl_c_exits_zero(pg_dsn: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "0", "--dsn", pg_dsn],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Done after" in out
