"""The one-step Kalman filter TheTransitClock uses for a segment's travel time.

After Shalaby and Farhan (Journal of Public Transportation 7(1), 2004): the previous
bus's time on the segment is blended with the historical mean, weighted by the
historical variance and the filter's error carried from the segment before.

    gain       g = (e + var) / (e + 2 var)
    prediction p = (1 - g) * last_bus + g * historical_mean
    new error  e' = var * g

With history 380, 400 and 420 s (mean 400, population variance 266.7), a previous
bus of 300 s and an error of 72.40, p is 355.98 s and e' is 149.3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True, slots=True)
class KalmanResult:
    prediction_s: float
    error: float  # the filter error (s²) to carry into the next segment


def historical_moments(durations: Sequence[float]) -> tuple[float, float]:
    """Mean and population variance; ValueError on no durations."""
    if not durations:
        raise ValueError("a historical mean needs at least one duration")
    n = len(durations)
    mean = sum(durations) / n
    return mean, sum((d - mean) ** 2 for d in durations) / n


def kalman_step(last_bus_s: float, mean_s: float, variance: float, error: float) -> KalmanResult:
    """Blend the previous bus's segment time with history. With no spread in either
    (variance and error both 0) history alone is used."""
    denom = error + 2.0 * variance
    gain = (error + variance) / denom if denom > 0 else 1.0
    return KalmanResult((1.0 - gain) * last_bus_s + gain * mean_s, variance * gain)


def kalman_predict(last_bus_s: float, history_s: Sequence[float], error: float) -> KalmanResult:
    mean, variance = historical_moments(history_s)
    return kalman_step(last_bus_s, mean, variance, error)
