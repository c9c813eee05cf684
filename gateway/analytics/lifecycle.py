"""Alert lifecycle: detector scores in, de-duplicated alert transitions out.

Detectors say, at a data time, "condition `kind` on `asset` scores s". The
tracker turns that stream of observations into alerts:

    score >= open_score          no alert open       --> opened (new stable id)
    score >= clear_score         alert open          --> updated (when figures move)
    no score >= clear_score      for clear_after_s   --> cleared at last_active + clear_after_s

Two thresholds and a hold time make the hysteresis: a condition hovering
around one threshold neither flaps nor floods. One open alert per (kind,
asset) is the de-duplication: a second detector seeing the same leak updates
the open alert and adds itself to `evidence["detectors"]`.

Everything runs on data time, never the wall clock, so replaying the same
readings gives the same alerts with the same ids, whatever the batch size:
a clear is stamped `last_active + clear_after_s` whether it is noticed by the
next observation or by `expire(now)` at the end of a batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

from gateway.events import Alert, Severity, alert_id

NS_PER_S = 1_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class KindPolicy:
    """How alerts of one kind open, update, clear and rank."""

    open_score: float = dataclasses.field(
        default=0.5, metadata={"help": "a score at or above this opens an alert"}
    )
    clear_score: float = dataclasses.field(
        default=0.33, metadata={"help": "scores at or above this keep an open alert alive"}
    )
    clear_after_s: float = dataclasses.field(
        default=900.0, metadata={"help": "seconds below clear_score before the alert clears"}
    )
    update_every_s: float = dataclasses.field(
        default=900.0, metadata={"help": "at most one update per this many seconds"}
    )
    warning_score: float = 0.5
    critical_score: float = 0.9
    critical_needs_ack: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.clear_score <= self.open_score <= 1.0:
            raise ValueError("need 0 <= clear_score <= open_score <= 1")
        if self.clear_after_s < 0 or self.update_every_s < 0:
            raise ValueError("clear_after_s and update_every_s must not be negative")

    def severity(self, score: float) -> Severity:
        if score >= self.critical_score:
            return Severity.CRITICAL
        if score >= self.warning_score:
            return Severity.WARNING
        return Severity.INFO


# Leaks are judged at night or per quarter hour, so they must outlive a day
# without an observation; transients are over in seconds.
DEFAULT_KINDS: Mapping[str, KindPolicy] = {
    "leak": KindPolicy(clear_after_s=26 * 3600.0, update_every_s=3600.0),
    "burst": KindPolicy(clear_after_s=1800.0, update_every_s=300.0, warning_score=0.0),
    "transient": KindPolicy(clear_after_s=5.0, update_every_s=1.0),
    "sensor_fault": KindPolicy(clear_after_s=3600.0, update_every_s=3600.0, critical_score=1.1),
}


@dataclasses.dataclass(frozen=True, slots=True)
class LifecycleSettings:
    default: KindPolicy = dataclasses.field(default_factory=KindPolicy)
    kinds: Mapping[str, KindPolicy] = dataclasses.field(default_factory=lambda: DEFAULT_KINDS)

    def policy(self, kind: str) -> KindPolicy:
        return self.kinds.get(kind, self.default)


@dataclasses.dataclass(slots=True)
class _Track:
    alert: Alert  # as last emitted
    last_active: int  # ns, last observation at or above clear_score
    last_emit: int  # ns, data time of the last emitted transition
    pending: dict[str, Any]  # newest figures not yet emitted
    held: bool = False  # cleared only by clear(), never by the hold time


def _merge_evidence(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out = {**old, **new}
    if "detectors" in old or "detectors" in new:
        seen = list(old.get("detectors", ()))
        seen += [d for d in new.get("detectors", ()) if d not in seen]
        out["detectors"] = seen
    return out


def _moved(a: float, b: float, rel: float) -> bool:
    if math.isnan(a) != math.isnan(b):
        return True
    if math.isnan(a):
        return False
    return abs(a - b) > rel * max(abs(a), abs(b), 1e-12)


class AlertTracker:
    """Open, update and clear alerts from scored observations, on data time."""

    def __init__(self, settings: LifecycleSettings | None = None) -> None:
        self.settings = settings or LifecycleSettings()
        self._open: dict[tuple[str, str, str], _Track] = {}

    def __iter__(self) -> Iterator[Alert]:
        return (t.alert for t in self._open.values())

    def __len__(self) -> int:
        return len(self._open)

    def get(self, kind: str, asset: str, subkey: str = "") -> Alert | None:
        track = self._open.get((kind, asset, subkey))
        return track.alert if track else None

    def observe(
        self,
        kind: str,
        asset: str,
        at: int,
        score: float,
        *,
        magnitude: float = math.nan,
        started_at: int | None = None,
        evidence: Mapping[str, Any] | None = None,
        message: str = "",
        subkey: str = "",
        held: bool = False,
    ) -> list[Alert]:
        """Record one observation; return the transitions it causes (0, 1 or 2).

        `subkey` tells apart conditions of one kind on one asset (a stuck and a
        drifting sensor). A `held` alert describes a state with a known end (a
        stream that stopped, a value that froze): it stays open until
        `clear()`, however long it goes without an observation.
        """
        policy = self.settings.policy(kind)
        key = (kind, asset, subkey)
        out: list[Alert] = []
        track = self._open.get(key)
        hold_ns = policy.clear_after_s * NS_PER_S
        if track is not None and not track.held and at - track.last_active > hold_ns:
            out.append(self._clear(key, track, policy))
            track = None
        if not score >= policy.clear_score:  # also false for NaN
            return out
        score = min(float(score), 1.0)
        if track is None:
            if score < policy.open_score:
                return out
            severity = policy.severity(score)
            alert = Alert(
                kind=kind,
                asset=asset,
                severity=severity,
                opened_at=at,
                message=message,
                started_at=at if started_at is None else min(started_at, at),
                magnitude=magnitude,
                score=score,
                evidence=_merge_evidence({}, evidence or {}),
                needs_ack=severity is Severity.CRITICAL and policy.critical_needs_ack,
                id=alert_id(kind, f"{asset}|{subkey}" if subkey else asset, at),
            )
            self._open[key] = _Track(alert, at, at, {}, held)
            out.append(alert)
            return out
        track.last_active = at
        current = track.alert
        figures = {**track.pending}
        pend_score = float(figures.get("score", current.score))
        figures["score"] = max(score, pend_score) if figures else score
        if not math.isnan(magnitude):
            figures["magnitude"] = magnitude
        if message:
            figures["message"] = message
        if started_at is not None and (
            current.started_at is None or started_at < current.started_at
        ):
            figures["started_at"] = started_at
        if evidence:
            figures["evidence"] = _merge_evidence(
                figures.get("evidence", current.evidence), evidence
            )
        severity = max(current.severity, policy.severity(figures["score"]))
        figures["severity"] = severity
        track.pending = figures
        due = at - track.last_emit >= policy.update_every_s * NS_PER_S
        moved = (
            _moved(current.magnitude, figures.get("magnitude", current.magnitude), 0.1)
            or abs(current.score - figures["score"]) > 0.05
            or "started_at" in figures
            or figures.get("evidence", current.evidence) != current.evidence
        )
        if severity > current.severity or (due and moved):
            out.append(self._emit_update(track, at, policy))
        return out

    def expire(self, now: int) -> list[Alert]:
        """Clear alerts idle for their hold time as of data time `now`."""
        out = []
        for key, track in list(self._open.items()):
            policy = self.settings.policy(key[0])
            if not track.held and now - track.last_active > policy.clear_after_s * NS_PER_S:
                out.append(self._clear(key, track, policy))
        return out

    def clear(self, kind: str, asset: str, at: int, subkey: str = "") -> list[Alert]:
        """Clear an open alert now (the condition is known to be over)."""
        track = self._open.pop((kind, asset, subkey), None)
        if track is None:
            return []
        alert = self._apply_pending(track, at, self.settings.policy(kind))
        return [alert.clear(max(at, alert.opened_at))]

    def _emit_update(self, track: _Track, at: int, policy: KindPolicy) -> Alert:
        track.alert = self._apply_pending(track, at, policy)
        track.last_emit = at
        return track.alert

    @staticmethod
    def _apply_pending(track: _Track, at: int, policy: KindPolicy) -> Alert:
        if not track.pending:
            return track.alert
        alert = track.alert.update(at, **track.pending)
        critical = alert.severity is Severity.CRITICAL
        if critical and policy.critical_needs_ack and not alert.needs_ack:
            alert = dataclasses.replace(alert, needs_ack=True)
        track.pending = {}
        return alert

    def _clear(self, key: tuple[str, str, str], track: _Track, policy: KindPolicy) -> Alert:
        del self._open[key]
        at = track.last_active + round(policy.clear_after_s * NS_PER_S)
        alert = self._apply_pending(track, track.last_active, policy)
        return alert.clear(at)
