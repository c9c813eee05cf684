"""The simulated meters' register maps: encodings worked out by hand, and bad maps refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.water.registers import Field, MapError, load_map, load_maps


def test_encodings_by_hand() -> None:
    assert Field("f", "input", 0, "float32").encode(1.5) == [0x3FC0, 0x0000]
    assert Field("v", "input", 0, "uint32", words="little", scale=0.001).encode(70.0) == [
        70_000 & 0xFFFF,
        70_000 >> 16,
    ]
    assert Field("p", "holding", 0, "int16", scale=0.01).encode(-0.05) == [0xFFFB]
    assert Field("c", "holding", 0, "uint16").encode(65_537) == [1]  # a counter wraps
    assert Field("a", "holding", 0, "bit", bit=3).encode(1.0) == [0b1000]
    assert Field("o", "coil", 0, "bool").encode(0.2) == [0]
    assert Field("s", "holding", 0, "string", length=3).encode_text("SIM1") == [
        0x5349,
        0x4D31,
        0x0000,
    ]


def test_every_shipped_map_loads() -> None:
    maps = load_maps()
    assert set(maps) == {"emf-flow-meter", "pressure-logger", "amr-meter", "hr-pressure-logger"}
    hf = maps["hr-pressure-logger"]
    assert hf.buffer is not None and hf.size(3) == 201 + 8


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[register]]\nname = "x"\ntable = "input"\naddress = 0\n', "needs the model"),
        ('model = "m"\n[[register]]\nname = "x"\ntable = "inptu"\naddress = 0\n', "table"),
        ('model = "m"\n[[register]]\nname = "x"\ntable = "input"\naddress = 0\nfoo = 1\n', "foo"),
        ('model = "m"\n[[register]]\nname = "x"\ntable = "coil"\naddress = 0\n', "bools only"),
        ('model = "m"\n[[register]]\nname = "x"\ntable = "input"\naddress = 0\ntype = "u8"\n',
         "type"),
    ],
)  # fmt: skip
def test_bad_maps_are_refused_naming_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(MapError, match=problem):
        load_map(path)
