"""The kernel tests again with NUMBA_DISABLE_JIT=1: the same code as plain Python, so
coverage tools see every line and a numba-only behaviour cannot hide a bug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_kernels_pass_without_jit() -> None:
    here = Path(__file__).resolve().parent
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(here / "test_kernels.py"),
        ],
        env=env,
        cwd=here.parents[1],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
