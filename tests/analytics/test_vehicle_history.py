"""Buffered history (Bundle.live is False) is stored but raises no live alert."""

from gateway.analytics.vehicle import VehicleRules
from gateway.analytics.vehicle_settings import VehicleRulesSettings
from gateway.bundle import Bundle
from gateway.events import Event
from gateway.streams import StreamRegistry

NOW = 1_800_000_000 * 1_000_000_000


def panic(live: bool) -> Bundle:
    press = Event(ts=NOW, asset="bus/MH12-KQ-4321", kind="panic", data={"live": True})
    return Bundle(events=(press,), live=live)


def test_history_bundle_passes_by_and_live_one_alerts() -> None:
    rules = VehicleRules(VehicleRulesSettings(), StreamRegistry(), clock=lambda: NOW)
    history = panic(live=False)
    assert rules.process(history) is history
    assert rules.open_alerts() == []
    out = rules.process(panic(live=True))
    assert [a.kind for a in out.alerts] == ["panic"]


def test_merged_bundle_is_live_only_if_all_parts_are() -> None:
    assert Bundle.merge([panic(True), panic(True)]).live
    assert not Bundle.merge([panic(True), panic(False)]).live
