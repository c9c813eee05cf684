"""The generic detector: causal, batch-size invariant, bounded, and robust to bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.analytics.anomaly import AnomalyDetector, AnomalySettings, warm_up
from gateway.analytics.kernels import NS_PER_S

MIN = 60 * NS_PER_S
DAY = 86_400 * NS_PER_S


def _stream(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.int64) * 5 * MIN
    x = 10 + np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.2, n)
    return ts, x


def _score(det: AnomalyDetector, ts: np.ndarray, x: np.ndarray, stream: int = 0) -> np.ndarray:
    return det.score(ts, np.full(len(ts), stream, np.int32), x)


def test_spike_scores_high_and_normal_data_low() -> None:
    ts, x = _stream(3000)
    x[2000] += 8.0
    s = _score(AnomalyDetector(1), ts, x)
    assert ((s >= 0) & (s <= 1)).all()
    assert s[: AnomalySettings().warmup].max() == 0.0  # warm-up
    assert s[2000] == 1.0
    quiet = np.r_[s[400:1990], s[2100:]]
    assert np.quantile(quiet, 0.99) < 0.3
    assert (quiet >= AnomalySettings().alarm).sum() < 20  # a handful of alarms in 2,500


def test_level_shift_is_caught_within_a_day_of_samples() -> None:
    ts, x = _stream(3000)
    x[2500:] += 3.0  # 15 noise sds, within the daily swing's reach
    s = _score(AnomalyDetector(1), ts, x)
    first = int(np.flatnonzero(s[2500:] >= AnomalySettings().alarm)[0])
    assert first < 60


def test_causal_score_of_sample_i_ignores_later_samples() -> None:
    ts, x = _stream(2000, seed=1)
    a = _score(AnomalyDetector(1), ts, x)
    y = x.copy()
    y[1200:] = np.random.default_rng(9).normal(100, 50, 800)  # rewrite the future
    b = _score(AnomalyDetector(1), ts, y)
    np.testing.assert_array_equal(a[:1200], b[:1200])
    assert not np.array_equal(a[1200:], b[1200:])


@pytest.mark.parametrize("batch", [1, 7, 64, 999])
def test_batch_size_invariance_many_streams(batch: int) -> None:
    rng = np.random.default_rng(2)
    n = 3000
    stream = rng.integers(0, 3, n).astype(np.int32)
    ts = np.arange(n, dtype=np.int64) * MIN
    x = stream * 100.0 + rng.normal(0, 1 + stream, n)
    x[rng.integers(0, n, 20)] += 30
    whole = AnomalyDetector(3).score(ts, stream, x)
    det = AnomalyDetector(3)
    parts = np.concatenate(
        [
            det.score(ts[i : i + batch], stream[i : i + batch], x[i : i + batch])
            for i in range(0, n, batch)
        ]
    )
    np.testing.assert_array_equal(whole, parts)


def test_streams_are_independent() -> None:
    ts, x = _stream(1500, seed=3)
    alone = _score(AnomalyDetector(2), ts, x, stream=1)
    det = AnomalyDetector(2)
    other = np.random.default_rng(4).normal(0, 1000, 1500)
    both_ts = np.repeat(ts, 2)
    both_stream = np.tile(np.array([0, 1], np.int32), 1500)
    both_x = np.column_stack([other, x]).ravel()
    mixed = det.score(both_ts, both_stream, both_x)
    np.testing.assert_array_equal(mixed[1::2], alone)


def test_nan_and_inf_score_zero_and_do_not_poison_state() -> None:
    ts, x = _stream(2000, seed=5)
    clean = _score(AnomalyDetector(1), ts, x)
    y = x.copy()
    bad = np.arange(500, 1500, 37)
    y[bad] = np.nan
    y[bad[::2]] = np.inf
    y[bad[1::3]] = -np.inf
    s = _score(AnomalyDetector(1), ts, y)
    assert np.isfinite(s).all()
    assert (s[bad] == 0.0).all()
    # Dropping the bad samples gives the same scores as never seeing them.
    keep = np.ones(2000, bool)
    keep[bad] = False
    dropped = _score(AnomalyDetector(1), ts[keep], x[keep])
    np.testing.assert_array_equal(s[keep], dropped)
    assert clean.shape == s.shape


def test_out_of_order_is_scored_but_not_learned_and_duplicates_are_fine() -> None:
    ts, x = _stream(1500, seed=6)
    late_ts = np.insert(ts, 1000, ts[10])  # a sample from the distant past
    late_x = np.insert(x, 1000, 1e6)
    s = _score(AnomalyDetector(1), late_ts, late_x)
    assert 0.0 <= s[1000] <= 1.0
    reference = _score(AnomalyDetector(1), ts, x)
    np.testing.assert_array_equal(np.delete(s, 1000), reference)
    dup_ts = np.repeat(ts, 2)
    dup_x = np.repeat(x, 2)
    d = _score(AnomalyDetector(1), dup_ts, dup_x)
    assert np.isfinite(d).all()
    assert ((d >= 0) & (d <= 1)).all()


def test_gap_of_days_resets_short_term_state_without_an_alarm() -> None:
    ts, x = _stream(3000, seed=7)
    ts[2000:] += 5 * DAY  # the meter was off for five days
    s = _score(AnomalyDetector(1), ts, x)
    assert np.isfinite(s).all()
    rewarm = AnomalySettings().rewarm
    assert s[2000 : 2000 + rewarm].max() == 0.0  # re-warming, no alarm for the gap itself
    quiet_before = np.quantile(s[500:2000], 0.999)
    assert s[2000 + rewarm : 2300].max() <= max(quiet_before, 0.5)


def test_flat_zero_stream_then_a_change() -> None:
    n = 1500
    ts = np.arange(n, dtype=np.int64) * MIN
    x = np.zeros(n)
    s = _score(AnomalyDetector(1), ts, x)
    assert (s == 0.0).all()
    x[1000] = 5.0
    s = _score(AnomalyDetector(1), ts, x)
    assert np.isfinite(s).all()
    assert s[1000] > 0.5  # the first change after a flat stretch is news
    assert (s[:1000] == 0.0).all()


def test_unknown_stream_ids_score_zero_and_grow() -> None:
    det = AnomalyDetector(1)
    ts = np.arange(3, dtype=np.int64)
    s = det.score(ts, np.array([0, 5, -1], np.int32), np.ones(3))
    assert s.tolist() == [0.0, 0.0, 0.0]
    det.grow(6)
    assert det.n_streams == 6
    det.reset(5)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="alpha_slow"):
        AnomalySettings(alpha_slow=0.0)
    with pytest.raises(ValueError, match="season_bins"):
        AnomalySettings(season_bins=7)


def test_warm_up() -> None:
    warm_up()
