"""Golden request plans: golden/<case>/profile.toml -> golden/<case>/expected.txt.

Each line of expected.txt is one request, as `Request.describe()` prints it.
Run with GOLDEN_UPDATE=1 to rewrite the expected files after a deliberate change
(and read the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.drivers.modbus.plan import plan_requests
from gateway.drivers.modbus.profiles import load_profile

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "profile.toml").exists())


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 6, f"golden cases missing under {GOLDEN}"


@pytest.mark.parametrize("case", CASES)
def test_request_plan_matches_golden(case: str) -> None:
    profile = load_profile(GOLDEN / case / "profile.toml")
    plan = plan_requests(
        profile.points,
        merge=profile.merge_requests,
        max_gap=profile.max_gap,
        max_registers=profile.max_registers,
    )
    got = "".join(r.describe() + "\n" for r in plan)
    expected_file = GOLDEN / case / "expected.txt"
    if os.environ.get("GOLDEN_UPDATE"):
        expected_file.write_text(got)
    assert got == expected_file.read_text()
    # every point is read exactly once, and no read exceeds the limits
    assert sorted(p.name for r in plan for p in r.points) == sorted(p.name for p in profile.points)
    for r in plan:
        assert r.count <= (2000 if r.fc in (1, 2) else profile.max_registers)
        assert all(r.address <= p.address and p.end <= r.end for p in r.points)


def test_plan_rejects_bad_limits() -> None:
    profile = load_profile(GOLDEN / "gap-threshold" / "profile.toml")
    with pytest.raises(ValueError, match="max_registers"):
        plan_requests(profile.points, max_registers=126)
