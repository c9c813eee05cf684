"""`gateway demo`, run as a user would."""

import re
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


def test_demo_lands_rows_in_postgresql(pg_dsn: str, tmp_path: Path) -> None:
    result = demo("--duration", "18", "--dsn", pg_dsn, "--sqlite", str(tmp_path / "x.sqlite"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ready (postgres mode)" in out
    assert re.search(r"meters 4/4 up", out), out
    done = re.search(r"(\d+) readings emitted \([\d.]+/s\); (\d+) readings of this run in", out)
    assert done, out
    assert int(done[1]) == int(done[2]) > 0, "every reading emitted is stored, once"
    assert re.search(r"ALERT opened  critical panic +bus/", out), "the injected panic press"
    assert re.search(r"ALERT opened  warning  burst +dma-02 ", out), "the injected burst"
    assert "0 rows left in the outbox" in out
    assert not (tmp_path / "x.sqlite").exists()


def test_demo_falls_back_to_sqlite_and_says_so(tmp_path: Path) -> None:
    store = tmp_path / "demo.sqlite"
    result = demo(
        "--duration",
        "3",
        "--buses",
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
