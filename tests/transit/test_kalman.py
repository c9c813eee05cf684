"""TheTransitClock's Kalman segment filter, with its own known answer."""

from __future__ import annotations

import pytest

from gateway.transit.kalman import historical_moments, kalman_predict, kalman_step


def test_known_answer_of_thetransitclock() -> None:
    got = kalman_predict(300.0, [380.0, 400.0, 420.0], 72.40)
    assert got.prediction_s == pytest.approx(355.98, abs=0.01)
    assert got.error == pytest.approx(149.3, abs=0.05)


def test_no_spread_trusts_history() -> None:
    assert kalman_step(300.0, 400.0, 0.0, 0.0).prediction_s == 400.0


def test_last_bus_weighs_at_most_half() -> None:
    # no carried error: the gain is 1/2 whatever the variance
    assert kalman_step(300.0, 400.0, 900.0, 0.0).prediction_s == pytest.approx(350.0)
    # a carried error that dwarfs the variance: history alone
    assert kalman_step(300.0, 400.0, 1.0, 1e9).prediction_s == pytest.approx(400.0, abs=0.01)


def test_history_needs_a_duration() -> None:
    with pytest.raises(ValueError, match="at least one"):
        historical_moments([])
