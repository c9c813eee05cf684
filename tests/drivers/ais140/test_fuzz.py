"""Fuzz: the framer and the parser never raise anything but the parser's own PacketError,
and the framer frames a stream the same however it is cut into reads."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.drivers.ais140 import Ais140Parser, PacketError
from gateway.drivers.ais140.framer import FrameError, Framer

GOLDEN = Path(__file__).parent / "golden" / "traccar_its.jsonl"
PACKETS = [json.loads(line)["packet"].encode() for line in GOLDEN.read_text().splitlines()]
PARSER = Ais140Parser()
ALPHABET = "0123456789.-,NSEWLHAV$*xX \r\n"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    packet = bytearray(draw(st.sampled_from(PACKETS)))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(packet) - 1))
        cut = draw(st.integers(0, 12))
        text = draw(st.text(alphabet=ALPHABET, max_size=12)).encode()
        packet[i : i + cut] = text
    return bytes(packet)


@settings(max_examples=600, deadline=None)
@given(data=mutated() | st.binary(max_size=600) | st.sampled_from(PACKETS))
def test_the_parser_returns_a_packet_or_its_own_error(data: bytes) -> None:
    try:
        packet = PARSER.parse(data)
    except PacketError as err:
        assert err.reason and str(err)
    else:
        assert packet.type in ("location", "emergency", "login", "heartbeat", "health")


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bytes, list[int]]:
    chosen = draw(st.lists(st.sampled_from(PACKETS), min_size=1, max_size=8))
    seps = [draw(st.sampled_from([b"", b"\r\n", b"\n", b"\r"])) for _ in chosen]
    stream = b"".join(p + s for p, s in zip(chosen, seps, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    return chosen, stream, cuts


def _frames(stream: bytes, cuts: list[int]) -> list[bytes | FrameError]:
    framer = Framer(1024)
    out: list[bytes | FrameError] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += framer.feed(stream[a:b])
    return out + framer.flush()


@settings(max_examples=300, deadline=None)
@given(case=streams())
def test_the_framer_frames_alike_however_the_reads_fall(
    case: tuple[list[bytes], bytes, list[int]],
) -> None:
    packets, stream, cuts = case
    assert _frames(stream, cuts) == packets


@settings(max_examples=400, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=300) | st.sampled_from(PACKETS), max_size=10),
    max_frame=st.integers(16, 2048),
)
def test_the_framer_survives_noise_and_bounds_its_frames(
    chunks: list[bytes], max_frame: int
) -> None:
    framer = Framer(max_frame)
    pieces = [p for chunk in chunks for p in framer.feed(chunk)] + framer.flush()
    for piece in pieces:
        if isinstance(piece, FrameError):
            assert piece.reason in ("noise", "no_end", "oversized") and len(piece.data) <= 64
        else:
            assert piece.startswith(b"$") and len(piece) <= max_frame
            with contextlib.suppress(PacketError):
                PARSER.parse(piece)
    assert framer.pending <= max_frame
