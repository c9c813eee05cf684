"""The alert tracker: hysteresis, de-duplication, severity, stable ids, data time."""

from __future__ import annotations

import math

import pytest

from gateway.analytics.lifecycle import AlertTracker, KindPolicy, LifecycleSettings
from gateway.events import AlertState, Severity, alert_id

S = 1_000_000_000
POLICY = KindPolicy(
    open_score=0.6, clear_score=0.3, clear_after_s=60.0, update_every_s=10.0, critical_score=0.9
)


def tracker() -> AlertTracker:
    return AlertTracker(LifecycleSettings(default=POLICY, kinds={}))


def test_opens_only_at_open_score_and_id_is_stable() -> None:
    t = tracker()
    assert t.observe("leak", "dma-01", 10 * S, 0.5) == []  # between the thresholds: no alert
    [opened] = t.observe("leak", "dma-01", 20 * S, 0.7, magnitude=1.5, started_at=5 * S)
    assert opened.state is AlertState.OPENED
    assert opened.opened_at == 20 * S and opened.started_at == 5 * S
    assert opened.id == alert_id("leak", "dma-01", 20 * S)
    assert opened.severity is Severity.WARNING and not opened.needs_ack


def test_hysteresis_keeps_alert_open_between_thresholds_then_clears_on_data_time() -> None:
    t = tracker()
    [a] = t.observe("leak", "dma-01", 0, 0.8)
    for k in range(1, 10):  # hovering between clear and open scores: still the same alert
        out = t.observe("leak", "dma-01", k * 30 * S, 0.4)
        assert all(x.id == a.id and x.is_open for x in out)
    assert len(t) == 1
    # nothing above clear_score for more than 60 s of data time: cleared at last_active + 60 s
    [cleared] = t.expire(9 * 30 * S + 61 * S)
    assert cleared.state is AlertState.CLEARED
    assert cleared.cleared_at == 9 * 30 * S + 60 * S
    assert len(t) == 0


def test_low_scores_do_not_keep_alert_alive_and_stale_alert_clears_before_reopen() -> None:
    t = tracker()
    [a] = t.observe("burst", "dma-02", 0, 0.95)
    assert t.observe("burst", "dma-02", 30 * S, 0.1) == []
    out = t.observe("burst", "dma-02", 200 * S, 0.95)
    assert [x.state for x in out] == [AlertState.CLEARED, AlertState.OPENED]
    assert out[0].id == a.id and out[0].cleared_at == 60 * S
    assert out[1].id != a.id


def test_deduplicates_and_merges_detectors_and_rate_limits_updates() -> None:
    t = tracker()
    t.observe("leak", "dma-01", 0, 0.7, magnitude=1.0, evidence={"detectors": ["night_flow"]})
    out = t.observe("leak", "dma-01", 5 * S, 0.7, magnitude=1.05)
    assert out == []  # not due and barely moved
    [upd] = t.observe(
        "leak", "dma-01", 20 * S, 0.75, magnitude=2.0, evidence={"detectors": ["inflow_cusum"]}
    )
    assert upd.state is AlertState.UPDATED and upd.magnitude == 2.0
    assert list(upd.evidence["detectors"]) == ["night_flow", "inflow_cusum"]
    assert len(t) == 1


def test_severity_rise_is_emitted_at_once_and_critical_needs_ack() -> None:
    t = tracker()
    [a] = t.observe("leak", "dma-01", 0, 0.7)
    [b] = t.observe("leak", "dma-01", S, 0.95)
    assert b.id == a.id and b.severity is Severity.CRITICAL and b.needs_ack
    # severity never falls while the alert is open
    t.observe("leak", "dma-01", 30 * S, 0.4, magnitude=9.0)
    [c] = t.expire(200 * S)
    assert c.severity is Severity.CRITICAL and c.magnitude == 9.0  # pending figures kept


def test_nan_score_is_ignored_and_kinds_have_their_own_policy() -> None:
    t = AlertTracker()
    assert t.observe("leak", "dma-01", 0, math.nan) == []
    t.observe("transient", "dma-01/pz-1", 0, 0.9)
    t.observe("leak", "dma-01", 0, 0.9)
    cleared = t.expire(10 * S)  # transients clear after 5 s by default, leaks after 26 h
    assert [c.kind for c in cleared] == ["transient"]
    assert t.get("leak", "dma-01") is not None


def test_policy_rejects_inverted_thresholds() -> None:
    with pytest.raises(ValueError):
        KindPolicy(open_score=0.3, clear_score=0.5)


def test_held_alerts_outlive_the_hold_time_and_subkeys_keep_conditions_apart() -> None:
    t = tracker()
    [stuck] = t.observe("sensor_fault", "dma-01/inlet/flow_lps", 0, 0.8, subkey="stuck", held=True)
    [spike] = t.observe("sensor_fault", "dma-01/inlet/flow_lps", 0, 0.8, subkey="spike")
    assert stuck.id != spike.id
    assert stuck.id == alert_id("sensor_fault", "dma-01/inlet/flow_lps|stuck", 0)
    [expired] = t.expire(3600 * S)  # only the spike: the stuck value has a known end
    assert expired.id == spike.id
    assert t.get("sensor_fault", "dma-01/inlet/flow_lps", "stuck") is not None
    [cleared] = t.clear("sensor_fault", "dma-01/inlet/flow_lps", 7200 * S, subkey="stuck")
    assert cleared.cleared_at == 7200 * S and len(t) == 0
    assert t.clear("sensor_fault", "dma-01/inlet/flow_lps", 7300 * S, subkey="stuck") == []
