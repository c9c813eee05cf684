"""Decoding by type and order, checked against values worked out by hand."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.drivers.modbus.profiles import Point
from gateway.drivers.modbus.registers import (
    decode,
    decode_string,
    encode,
    encode_raw,
    encode_string,
)


def pt(type_: str, order: str = "ABCD", **kw: object) -> Point:
    return Point(name="x", fc=3, address=0, type=type_, order=order, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("type_", "order", "regs", "expected"),
    [
        ("uint16", "ABCD", [0xFFFF], 65535),
        ("int16", "ABCD", [0xFFFF], -1),
        ("int16", "ABCD", [0x8000], -32768),
        # 0x12345678 in each order, as a meter manual prints it
        ("uint32", "ABCD", [0x1234, 0x5678], 0x12345678),
        ("uint32", "CDAB", [0x5678, 0x1234], 0x12345678),
        ("uint32", "BADC", [0x3412, 0x7856], 0x12345678),
        ("uint32", "DCBA", [0x7856, 0x3412], 0x12345678),
        ("int32", "ABCD", [0xFFFF, 0xFFFE], -2),
        ("int32", "CDAB", [0xFFFE, 0xFFFF], -2),
        # 1.5 is 0x3FC00000
        ("float32", "ABCD", [0x3FC0, 0x0000], 1.5),
        ("float32", "CDAB", [0x0000, 0x3FC0], 1.5),
        ("float32", "BADC", [0xC03F, 0x0000], 1.5),
        ("float32", "DCBA", [0x0000, 0xC03F], 1.5),
        # 0x0001020304050607 (readings are float64: exact up to 2^53)
        ("uint64", "ABCD", [0x0001, 0x0203, 0x0405, 0x0607], 0x0001020304050607),
        ("uint64", "CDAB", [0x0607, 0x0405, 0x0203, 0x0001], 0x0001020304050607),
        ("uint64", "BADC", [0x0100, 0x0302, 0x0504, 0x0706], 0x0001020304050607),
        ("uint64", "DCBA", [0x0706, 0x0504, 0x0302, 0x0100], 0x0001020304050607),
        ("int64", "ABCD", [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFD], -3),
        # 1.0 is 0x3FF0000000000000; -2.5 is 0xC004000000000000
        ("float64", "ABCD", [0x3FF0, 0, 0, 0], 1.0),
        ("float64", "DCBA", [0, 0, 0, 0x04C0], -2.5),
    ],
)
def test_decode_by_type_and_order(type_: str, order: str, regs: list[int], expected: float) -> None:
    point = pt(type_, order)
    assert decode(point, regs) == expected
    assert encode(point, expected) == regs


def test_bits_scale_offset_and_strings() -> None:
    assert decode(pt("bit", bit=1), [0b1010]) == 1.0
    assert decode(pt("bit", bit=2), [0b1010]) == 0.0
    assert decode(pt("bit", bit=15), [0x8000]) == 1.0
    # a pressure in cm of head with an offset: 1234 * 0.01 - 1 = 11.34 m
    assert decode(pt("int16", scale=0.01, offset=-1.0), [1234]) == pytest.approx(11.34)
    assert decode(Point("v", fc=1, address=0, type="bool"), [1]) == 1.0
    s = pt("string", length=4)
    assert decode_string(s, [0x5349, 0x4D30, 0x3031, 0x0000]) == "SIM001"
    assert encode_string(s, "SIM001") == [0x5349, 0x4D30, 0x3031, 0x0000]
    assert decode_string(pt("string", "BADC", length=2), [0x4953, 0x004D]) == "SIM"
    assert math.isnan(decode(s, [0, 0, 0, 0]))


def test_integers_wrap_when_encoded() -> None:
    assert encode_raw(pt("uint32"), 2**32 + 5) == [0, 5]
    assert encode_raw(pt("int16"), -1) == [0xFFFF]


@given(
    st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]),
    st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
    st.integers(),
)
def test_integer_round_trip(type_: str, order: str, raw: int) -> None:
    point = pt(type_, order)
    bits = 16 * point.width
    raw %= 1 << bits
    signed = type_.startswith("int") and raw >= 1 << (bits - 1)
    value = raw - (1 << bits) if signed else raw
    if abs(value) > 2**53:  # readings are float64, exact only up to 2^53
        value //= 1 << 12
    regs = encode(point, value)
    assert all(0 <= r <= 0xFFFF for r in regs) and len(regs) == point.width
    assert decode(point, regs) == value


@given(
    st.sampled_from(["float32", "float64"]),
    st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
    st.floats(allow_nan=False, width=32),
)
def test_float_round_trip(type_: str, order: str, value: float) -> None:
    point = pt(type_, order)
    assert decode(point, encode(point, value)) == value
    # the registers hold the IEEE bytes in the named order
    packed = struct.pack(">f" if type_ == "float32" else ">d", value)
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    if order == "ABCD":
        assert encode(point, value) == words
