"""Profiles: the shipped ones load; broken ones are refused naming file and point."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.drivers.modbus.profiles import (
    ProfileError,
    default_profiles_dir,
    load_profile,
    load_profiles,
)

HEAD = '[profile]\nname = "test"\n'


def test_shipped_profiles_load() -> None:
    profiles = load_profiles(default_profiles_dir())
    assert {"emf-flow-meter", "pressure-logger", "amr-meter", "hr-pressure-logger"} <= set(profiles)
    emf = profiles["emf-flow-meter"]
    assert emf.point("flow_lps").type == "float32" and emf.point("flow_lps").role == "flow"
    assert emf.point("volume_m3").role == "totaliser"
    amr = profiles["amr-meter"]
    assert amr.point("volume_m3").type == "uint32" and amr.point("volume_m3").rollover == 1e5
    assert {p.name for p in amr.points if p.role == "alarm"} == {
        "tamper",
        "low_battery",
        "empty_pipe",
        "meter_leak",
    }
    assert {p.fc for p in amr.points} == {1, 2, 3}
    block = profiles["hr-pressure-logger"].sample_block
    assert block is not None and block.rate_hz == 100 and block.size == 120


@pytest.mark.parametrize(
    ("body", "point", "fragment"),
    [
        (
            '[[points]]\nname = "a"\nfc = 3\naddress = 0\ntype = "uint32"\n'
            '[[points]]\nname = "b"\nfc = 3\naddress = 1\n',
            "b",
            "overlaps point 'a' at fc 3 register 1",
        ),
        (
            '[[points]]\nname = "a"\nfc = 3\naddress = 0\ntype = "bit"\nbit = 3\n'
            '[[points]]\nname = "b"\nfc = 3\naddress = 0\ntype = "bit"\nbit = 3\n',
            "b",
            "overlaps point 'a'",
        ),
        ('[[points]]\nname = "a"\nfc = 3\naddress = 0\ntype = "float16"\n', "a", "unknown type"),
        ('[[points]]\nname = "a"\nfc = 4\naddress = 65535\ntype = "uint32"\n', "a", "out of range"),
        ('[[points]]\nname = "a"\nfc = 4\naddress = -1\n', "a", "out of range"),
        ('[[points]]\nname = "a"\nfc = 3\naddress = 0\ntype = "bit"\nbit = 16\n', "a", "bit"),
        ('[[points]]\nname = "a"\nfc = 7\naddress = 0\n', "a", "fc must be one of"),
        ('[[points]]\nname = "a"\nfc = 3\naddress = 0\ntype = "string"\n', "a", "length"),
        ('[[points]]\nname = "a"\nfc = 3\naddress = 0\nscael = 2\n', "a", "unknown keys"),
        ('[[points]]\nname = "a"\nfc = 3\naddress = 0\norder = "ACBD"\n', "a", "order"),
        ('[[points]]\nname = "a"\nfc = 1\naddress = 0\ntype = "uint16"\n', "a", '"bool"'),
    ],
)
def test_bad_profiles_are_refused_naming_file_and_point(
    tmp_path: Path, body: str, point: str, fragment: str
) -> None:
    path = tmp_path / "bad-meter.toml"
    path.write_text(HEAD + body)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert str(path) in text and f"point {point!r}" in text and fragment in text, text


def test_folder_level_errors(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(HEAD + '[[points]]\nname = "x"\nfc = 3\naddress = 0\n')
    (tmp_path / "b.toml").write_text(HEAD + '[[points]]\nname = "y"\nfc = 3\naddress = 0\n')
    with pytest.raises(ProfileError, match="also used by"):
        load_profiles(tmp_path)
    with pytest.raises(ProfileError, match="not valid TOML"):
        (tmp_path / "b.toml").write_text("[profile\n")
        load_profiles(tmp_path)
    with pytest.raises(ProfileError, match="not found"):
        load_profiles(tmp_path / "missing")
