"""The one backoff: capped exponential delays with jitter, for every retry in the gateway
(sink writes, source restarts, reconnects), so restarts do not synchronise."""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # +/- share of the delay, so restarts do not synchronise

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt))
        return base * (1 + random.uniform(-self.jitter, self.jitter))
