"""PostgresSink over TLS with sslmode=verify-full, against a throwaway cluster
with a certificate from a test CA (openssl), on a spare port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.db.migrate import migrate
from gateway.db.settings import PostgresSettings
from gateway.parts import SinkUnavailable
from gateway.sinks.postgres import PostgresSink
from gateway.streams import StreamRegistry

NOW = time.time_ns()
PG_BIN = Path(os.environ.get("GATEWAY_PG_BIN", "/usr/lib/postgresql/15/bin"))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(cwd: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.pem", "-days", "1", "-subj", f"/CN={name}", cwd=cwd)  # fmt: skip


@pytest.fixture
def tls_cluster() -> Iterator[tuple[int, Path]]:
    """(port, directory holding ca.pem and other-ca.pem)."""
    if not (PG_BIN / "initdb").exists() or shutil.which("openssl") is None:
        pytest.fail(f"need PostgreSQL server binaries in {PG_BIN} and openssl for the TLS test")
    root = Path(tempfile.mkdtemp(prefix="gw-pg-tls-"))
    make_ca(root, "ca")
    make_ca(root, "other-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=root)  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1",
            "-extfile", "san.ext", cwd=root)  # fmt: skip
    (root / "server.key").chmod(0o600)
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; run the cluster as postgres
        for p in [root, *root.iterdir()]:
            shutil.chown(p, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    data = root / "data"
    subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                    "-A", "trust"], check=True, capture_output=True, timeout=120)  # fmt: skip
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on "
        f"-c ssl_cert_file={root / 'server.crt'} -c ssl_key_file={root / 'server.key'}"
    )
    ctl = [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data)]
    subprocess.run([*ctl, "-o", opts, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    try:
        yield port, root
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run([*ctl, "-m", "immediate", "-w", "stop"],
                           check=True, capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def dsn(port: int, ca: Path) -> str:
    # host names the certificate; hostaddr avoids resolving localhost to ::1
    return (
        f"postgresql://postgres@localhost:{port}/postgres"
        f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
    )


async def test_verify_full_connects_and_writes(tls_cluster: tuple[int, Path]) -> None:
    port, root = tls_cluster
    settings = PostgresSettings(dsn=dsn(port, root / "ca.pem"))
    await migrate(settings.conninfo())
    registry = StreamRegistry()
    registry.register("dma-01/inlet/flow_lps", "L/s", "flow")
    sink = PostgresSink.from_settings(settings, registry, "gw-tls")
    await sink.open()
    try:
        await sink.write(
            Bundle(readings=ReadingBatch.of(NOW + np.arange(5) * 1000, np.zeros(5), np.ones(5)))
        )
    finally:
        await sink.close()
    with psycopg.connect(settings.conninfo()) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (5,)


async def test_a_server_certificate_from_another_ca_is_refused(
    tls_cluster: tuple[int, Path],
) -> None:
    port, root = tls_cluster
    registry = StreamRegistry()
    registry.register("dma-01/inlet/flow_lps", "L/s", "flow")
    sink = PostgresSink(dsn(port, root / "other-ca.pem"), registry, "gw-tls", connect_timeout=2)
    await sink.open()
    try:
        with pytest.raises(SinkUnavailable, match="certificate verify failed"):
            await sink.write(Bundle(readings=ReadingBatch.of([NOW], [0], [1.0])))
    finally:
        await sink.close()
