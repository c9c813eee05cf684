"""Register decoding: 16-bit words to numbers, by type, byte/word order, scale and offset.

Orders name where the bytes of a big-endian value A B C D (A most significant)
sit in the registers, as meter manuals print them:

    ABCD  big-endian words, big-endian bytes   regs [AB, CD]
    CDAB  word-swapped                          regs [CD, AB]
    BADC  byte-swapped within each word         regs [BA, DC]
    DCBA  little-endian                         regs [DC, BA]

For 64-bit values the same rule applies to four registers (word swap reverses
the register order).

    decode(point, regs: Sequence[int]) -> float      (NaN for a string point)
    decode_string(point, regs) -> str
    encode(point, value: float) -> list[int]          (the inverse; the tests use it)
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence

from gateway.drivers.modbus.profiles import Point

_STRUCT = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def _reorder(regs: Sequence[int], order: str) -> bytes:
    """Registers as read, to the big-endian bytes of the value."""
    words = list(regs)
    if order in ("CDAB", "DCBA"):
        words.reverse()
    raw = b"".join(int(w).to_bytes(2, "big") for w in words)
    if order in ("BADC", "DCBA"):
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    return raw


def _unorder(raw: bytes, order: str) -> list[int]:
    """Big-endian bytes of a value to registers in `order` (the inverse of _reorder)."""
    if order in ("BADC", "DCBA"):
        raw = bytes(b for i in range(0, len(raw), 2) for b in (raw[i + 1], raw[i]))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    return words


Decoder = Callable[[Sequence[int], int], float]


@functools.cache
def decoder(point: Point) -> Decoder:
    """A function (regs, offset) -> engineering value for `point`, with the
    order and formats worked out once rather than on every poll."""
    scale, offset = point.scale, point.offset
    if point.type == "bool":
        return lambda regs, at: (1.0 if regs[at] else 0.0) * scale + offset
    if point.type == "bit":
        bit = point.bit
        return lambda regs, at: float((regs[at] >> bit) & 1) * scale + offset
    if point.type == "string":
        return lambda regs, at: math.nan
    width = point.width
    swap_bytes = point.order in ("BADC", "DCBA")
    swap_words = point.order in ("CDAB", "DCBA")
    words = struct.Struct(("<" if swap_bytes else ">") + "H" * width)
    value = struct.Struct(">" + _STRUCT[point.type])

    def decode_point(regs: Sequence[int], at: int) -> float:
        ws = regs[at : at + width]
        if swap_words:
            ws = ws[::-1]
        number: float = value.unpack(words.pack(*ws))[0]
        return number * scale + offset

    return decode_point


def decode_raw(point: Point, regs: Sequence[int]) -> float:
    """The unscaled number held by the point's registers."""
    if point.type == "string":
        return math.nan
    return (decoder(point)(regs, 0) - point.offset) / point.scale


def decode(point: Point, regs: Sequence[int]) -> float:
    """The engineering value: raw * scale + offset."""
    return decoder(point)(regs, 0)


def decode_string(point: Point, regs: Sequence[int]) -> str:
    raw = _reorder(regs[: point.width], "BADC" if point.order in ("BADC", "DCBA") else "ABCD")
    return raw.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()


def encode_raw(point: Point, raw_value: float) -> list[int]:
    """Registers holding the unscaled `raw_value` (integers are rounded and wrapped)."""
    if point.type == "bool":
        return [1 if raw_value else 0]
    if point.type == "bit":
        return [(1 << point.bit) if raw_value else 0]
    if point.type == "string":
        raise TypeError("use encode_string for string points")
    fmt = _STRUCT[point.type]
    if fmt in "fd":
        packed = struct.pack(">" + fmt, raw_value)
    else:
        bits = 8 * struct.calcsize(fmt)
        number = round(raw_value) % (1 << bits)
        packed = number.to_bytes(bits // 8, "big")
    return _unorder(packed, point.order)


def encode(point: Point, value: float) -> list[int]:
    """Registers holding the engineering `value` (the inverse of decode)."""
    return encode_raw(point, (value - point.offset) / point.scale)


def encode_string(point: Point, text: str) -> list[int]:
    raw = text.encode("ascii")[: 2 * point.width].ljust(2 * point.width, b"\x00")
    return _unorder(raw, "BADC" if point.order in ("BADC", "DCBA") else "ABCD")
