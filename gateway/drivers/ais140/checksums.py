"""The checksum algorithms AIS-140 vendors use, and where each sits in a packet.

AIS-140 leaves the checksum to the vendor. Seen in the field:

    $...,171B56E1*      the last field, before '*'    (CRC-32 of '$' up to the checksum)
    $...,0B,*           the same, and a trailing ','  (XOR of '$' up to the checksum)
    $...*7B             after '*'                     (XOR of '$' up to and with the '*')
    $...*226F7BD1       after '*'                     (CRC-32 of '$' up to the '*')
    $...*3F2A           after '*'                     (CRC-16 of the bytes between '$' and '*')

so a profile names the algorithm, the place (`after_star`, `last_field`) and the
span it covers: `body` (between '$' and '*'), `dollar` ('$' up to the '*' or the
checksum field) or `through` ('$' up to the first checksum character).
"""

from __future__ import annotations

import binascii
import zlib
from collections.abc import Callable
from typing import Final, Literal

# any: verified if one of the three holds over one of the spans (units of many vendors)
Algorithm = Literal["xor8", "crc16", "crc32", "none", "unknown", "any"]
Place = Literal["after_star", "last_field"]
Span = Literal["body", "dollar", "through"]
ALGORITHMS: Final = ("xor8", "crc16", "crc32", "none", "unknown", "any")
PLACES: Final = ("after_star", "last_field")
SPANS: Final = ("body", "dollar", "through")


def xor8(data: bytes) -> str:
    """XOR of every byte, folding the bytes as one integer in halves (a byte loop in
    Python costs about 10 times as much on a 250-byte packet)."""
    size = 1 << max(len(data) - 1, 0).bit_length()
    acc = int.from_bytes(data.rjust(size, b"\0"), "big")
    width = size * 8
    while width > 8:
        width //= 2
        acc = (acc >> width) ^ (acc & ((1 << width) - 1))
    return f"{acc:02X}"


def crc16(data: bytes) -> str:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): binascii's CRC-CCITT from 0xFFFF."""
    return f"{binascii.crc_hqx(data, 0xFFFF):04X}"


def crc32(data: bytes) -> str:
    return f"{zlib.crc32(data):08X}"


COMPUTE: Final[dict[str, Callable[[bytes], str]]] = {
    "xor8": xor8,
    "crc16": crc16,
    "crc32": crc32,
}
