"""Framer: a unit's byte stream cut into packets by the grammar, not by reads.

    b'..noise..$NRM,...*7B\\r\\n$NRM,...,C9FB'  +  b'BF99$EPB,...'
       |        '---- frame ----'  '----- frame, ends at the next '$' ------'
       '-- noise (counted)

A packet starts at '$' and ends at a line end ('\\r' or '\\n') or where the next
'$' starts; '$' never occurs inside one. Several packets in one read, one packet
over several reads, and '\\r\\n' or nothing between them all frame the same. A
packet at the end of the buffer is held until more bytes say where it ends, or
until `flush` (the connection went quiet: the source calls it after a short
linger, so a unit that sends one login with no terminator and waits for the
acknowledgement is answered).

`feed` and `flush` return frames (bytes) and FrameErrors: `noise` (bytes that
are not inside a packet), `no_end` (no end within max_frame bytes; skipped up to
the next '$'), `oversized` (a frame longer than max_frame).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final

_BLANK: Final = b" \t\r\n\x00"
_STOP: Final = re.compile(rb"[$\r\n]")


@dataclasses.dataclass(frozen=True, slots=True)
class FrameError:
    reason: str  # noise, no_end, oversized
    detail: str
    data: bytes


Piece = bytes | FrameError


class Framer:
    """Per connection; holds at most `max_frame` bytes between calls."""

    __slots__ = ("_buf", "_skipping", "max_frame")

    def __init__(self, max_frame: int = 1024) -> None:
        if max_frame < 16:
            raise ValueError("max_frame must be at least 16 bytes")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._skipping = False  # inside a frame already refused as no_end

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Piece]:
        self._buf += data
        out: list[Piece] = []
        buf = self._buf
        pos = 0
        while pos < len(buf):
            if self._skipping or buf[pos] != ord("$"):
                start = buf.find(b"$", pos + (buf[pos] == ord("$")))
                end = len(buf) if start < 0 else start
                if self._skipping:
                    self._skipping = start < 0
                else:
                    self._noise(bytes(buf[pos:end]), out)
                pos = end
                continue
            stop = self._end(buf, pos)
            if stop < 0:
                if len(buf) - pos > self.max_frame:
                    head = bytes(buf[pos : pos + 64])
                    detail = f"no end of packet within {self.max_frame} bytes"
                    out.append(FrameError("no_end", detail, head))
                    self._skipping = True
                    pos += 1
                    continue
                break
            self._frame(bytes(buf[pos:stop]), out)
            pos = stop
        del buf[:pos]
        return out

    def flush(self) -> list[Piece]:
        """What is held, as a frame: the unit has gone quiet after it."""
        out: list[Piece] = []
        if self._buf and not self._skipping:
            self._frame(bytes(self._buf), out)
        self._buf.clear()
        self._skipping = False
        return out

    def _end(self, buf: bytearray, start: int) -> int:
        """Index just past the frame at `start`, or -1 if its end has not come yet."""
        found = _STOP.search(buf, start + 1)
        if found is None:
            return -1
        i = found.start()
        return i if buf[i] == ord("$") else i + 1

    def _frame(self, frame: bytes, out: list[Piece]) -> None:
        frame = frame.rstrip(_BLANK)
        if len(frame) > self.max_frame:
            detail = f"{len(frame)} bytes > max_frame {self.max_frame}"
            out.append(FrameError("oversized", detail, frame[:64]))
        elif len(frame) > 1:
            out.append(frame)

    def _noise(self, data: bytes, out: list[Piece]) -> None:
        if data.strip(_BLANK):
            detail = f"{len(data)} bytes outside any packet (a packet starts with '$')"
            out.append(FrameError("noise", detail, data[:64]))
