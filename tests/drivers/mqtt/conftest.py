"""Our own Mosquitto on a spare port (so a test can restart it), and TLS material for it."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A mosquitto process with persistence, on a port of its own."""

    def __init__(self, folder: Path, extra: str = "", anonymous: bool = True) -> None:
        if not Path(MOSQUITTO).exists():
            pytest.fail(f"mosquitto is not installed at {MOSQUITTO}; apt-get install mosquitto")
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"user {getpass.getuser()}\n"  # as root, mosquitto would drop to a user that cannot
            # write this test's folder
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "max_queued_messages 100000\n"
            "max_inflight_messages 100\n"
            f"log_dest file {self.log}\n"
            "log_type all\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log.read_text() if self.log.exists() else ""
                pytest.fail(f"mosquitto exited with {self.proc.returncode}:\n{log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not open its port within 10 s")

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file (sessions, queued messages) and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(folder: Path) -> dict[str, Path]:
    """A CA, a server cert for 127.0.0.1/localhost and a client cert, with the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make test certificates")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=gw-test-ca", "-keyout", "ca.key", "-out", "ca.pem",
             cwd=folder)  # fmt: skip
    for name, cn in (("server", "localhost"), ("client", "gateway-test")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder)  # fmt: skip
        ext = ["-extfile", "server.ext"] if name == "server" else []
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext,
                 cwd=folder)  # fmt: skip
    # a second CA that signed nothing: a client trusting it must refuse the server
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other",
             "-keyout", "other.key", "-out", "other.pem", cwd=folder)  # fmt: skip
    return {n: folder / f"{n}" for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                          "client.key", "other.pem")}  # fmt: skip
