"""Per-unit sequence numbers: duplicates refused, gaps counted.

A unit numbers its messages (one counter per kind). The broker may deliver a
QoS 1 message twice (a redelivery after a reconnect), and Mosquitto silently
drops messages for a subscriber that falls behind (`max_queued_messages`), so
the numbers are the only way to see either. For each key the tracker keeps the
highest number seen and a bitmask of the `window` numbers below it:

    seq == a number in the window already seen  -> duplicate (refused)
    seq  > highest + 1                          -> the numbers skipped count as gaps
    seq  < highest, inside the window, unseen   -> a late arrival: one gap filled
    seq behind the window, within max_jump      -> late, unchecked (one gap filled)
    seq far behind (unit rebooted) or far ahead -> a restart: counted, tracking restarts
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(slots=True)
class SequenceStats:
    duplicates: int = 0
    gaps: int = 0  # messages skipped and not (yet) arrived late
    late: int = 0  # arrived after a higher number (each one also un-counts a gap)
    restarts: int = 0  # a unit's counter jumped back (reboot) or far ahead


class SequenceTracker:
    def __init__(self, window: int = 256, modulus: int = 2**32, max_jump: int = 100_000) -> None:
        if not 0 < window <= 4096:
            raise ValueError("window must be in 1..4096")
        self.window = window
        self.modulus = modulus
        self.max_jump = max_jump
        self._full = (1 << window) - 1
        self._state: dict[int, tuple[int, int]] = {}  # key -> (highest, seen mask)
        self.stats = SequenceStats()

    def observe(self, key: int, seq: int) -> bool:
        """Record `seq` for `key`; False when it is a duplicate."""
        state = self._state.get(key)
        if state is None:
            self._state[key] = (seq, 1)
            return True
        highest, mask = state
        ahead = (seq - highest) % self.modulus
        if ahead == 0:
            self.stats.duplicates += 1
            return False
        if ahead <= self.max_jump:
            self.stats.gaps += ahead - 1
            self._state[key] = (seq, ((mask << ahead) | 1) & self._full)
            return True
        behind = (highest - seq) % self.modulus
        if behind < self.window:
            bit = 1 << behind
            if mask & bit:
                self.stats.duplicates += 1
                return False
            self.stats.late += 1
            self.stats.gaps -= 1
            self._state[key] = (highest, mask | bit)
            return True
        if behind <= self.max_jump:
            # too far back to tell a duplicate from a late arrival; it was counted as a gap
            self.stats.late += 1
            self.stats.gaps -= 1
            return True
        self.stats.restarts += 1
        self._state[key] = (seq, 1)
        return True

    def forget(self, key: int) -> None:
        self._state.pop(key, None)

    def __len__(self) -> int:
        return len(self._state)
