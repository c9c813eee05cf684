"""Health rules on hand-made sequences: overheating, low oil pressure while running,
battery under-voltage, idling, the panic button and active DTCs."""

from __future__ import annotations

from gateway.analytics.vehicle_settings import ModelThresholds, VehicleRulesSettings
from gateway.events import Event, Severity
from tests.analytics.vehicle_harness import LAT0, LON0, Harness, at, states

NAN = float("nan")


def test_overheat_needs_60s_and_clears_with_hysteresis() -> None:
    h = Harness()
    # 106 °C for 30 s, then normal: too short
    h.readings([("b1", "coolant_c", t, v) for t, v in [(0, 106.0), (30, 106.0), (60, 95.0)]])
    assert h.of("engine_overheat") == []
    # from t=120: opens at t=180, once, with its evidence
    h.readings([("b1", "coolant_c", t, 106.0 + t / 100) for t in range(120, 241, 30)])
    got = h.of("engine_overheat")
    assert len(got) == 1 and got[0].opened_at == at(180) and got[0].started_at == at(120)
    assert got[0].severity is Severity.CRITICAL
    assert got[0].evidence["threshold"] == 105.0 and got[0].evidence["held_s"] == 60.0
    # 103 °C is below the trip point but above the 100 °C clear edge: stays open
    h.readings([("b1", "coolant_c", t, 103.0) for t in range(270, 400, 30)])
    assert states(h.of("engine_overheat")) == ["opened"]
    # one cool sample, then hot again: the clear timer restarts
    h.readings([("b1", "coolant_c", 420, 98.0), ("b1", "coolant_c", 440, 104.0)])
    # cool for 30 s: clears once
    h.readings([("b1", "coolant_c", t, 97.0) for t in range(460, 560, 15)])
    got = h.of("engine_overheat")
    assert states(got) == ["opened", "cleared"]
    assert got[1].cleared_at == at(490) and got[1].evidence["worst"] == 108.4


def test_overheat_threshold_per_model() -> None:
    settings = VehicleRulesSettings(
        models={
            "default": ModelThresholds(),
            "cng": ModelThresholds(coolant_max_c=98.0, coolant_clear_c=95.0),
        },
        vehicle_models={"cng-1": "cng"},
    )
    h = Harness(settings)
    rows = [(bus, "coolant_c", t, 100.0) for bus in ("cng-1", "diesel-1") for t in range(0, 91, 30)]
    h.readings(rows)
    got = h.of("engine_overheat")
    assert [a.asset for a in got] == ["bus/cng-1"] and got[0].evidence["threshold"] == 98.0


def test_low_oil_pressure_only_while_running() -> None:
    h = Harness()
    # low oil at idle-off rpm (engine stopped): normal, no alert
    h.readings([("b1", "rpm", 0, 0.0)] + [("b1", "oil_kpa", t, 20.0) for t in range(0, 30, 2)])
    assert h.of("low_oil_pressure") == []
    # running at 800 rpm with 80 kPa for 8 s, then fine: too short
    h.readings([("b1", "rpm", 40, 800.0)] + [("b1", "oil_kpa", t, 80.0) for t in range(40, 49, 2)])
    h.readings([("b1", "oil_kpa", 50, 300.0)])
    assert h.of("low_oil_pressure") == []
    # 10 s at 80 kPa while running: opens once, with the rpm in evidence
    h.readings([("b1", "rpm", 60, 900.0)] + [("b1", "oil_kpa", t, 80.0) for t in range(60, 80, 2)])
    got = h.of("low_oil_pressure")
    assert len(got) == 1 and got[0].opened_at == at(70)
    assert got[0].evidence["rpm"] == 900.0 and got[0].evidence["threshold"] == 100.0
    # the engine stops: the condition no longer applies; clears after 30 s of that
    h.readings([("b1", "rpm", t, 0.0) for t in range(80, 121, 10)])
    assert states(h.of("low_oil_pressure")) == ["opened", "cleared"]


def test_battery_under_voltage() -> None:
    h = Harness()
    h.readings([("b1", "battery_v", t, 22.5) for t in range(0, 50, 10)])
    h.readings([("b1", "battery_v", 50, 24.5)])
    assert h.of("battery_low") == []  # 40 s < 60 s
    h.readings([("b1", "battery_v", t, 22.0) for t in range(100, 200, 10)])
    got = h.of("battery_low")
    assert len(got) == 1 and got[0].opened_at == at(160)
    h.readings([("b1", "battery_v", t, 23.5) for t in range(200, 300, 10)])  # inside the band
    h.readings([("b1", "battery_v", t, 26.0) for t in range(300, 400, 10)])
    got = h.of("battery_low")
    assert states(got) == ["opened", "cleared"] and got[1].evidence["worst"] == 22.0


def test_excess_idling_from_rpm_and_fix_speed() -> None:
    h = Harness()
    # engine on, parked for 4 minutes, then moves: not excess
    h.fixes([("b1", t, LAT0, LON0, 0.0) for t in range(0, 240, 10)])
    h.readings([("b1", "rpm", t, 650.0) for t in range(0, 240, 30)])
    h.fixes([("b1", 250, LAT0 + 0.0005, LON0, 5.0)])
    assert h.of("idling") == []
    # parked with the engine on from t=300: opens at t=600
    h.fixes([("b1", t, LAT0 + 0.0005, LON0, 0.0) for t in range(300, 700, 10)])
    h.readings([("b1", "rpm", t, 650.0) for t in range(300, 700, 30)])
    got = h.of("idling")
    assert len(got) == 1 and got[0].opened_at == at(600) and got[0].started_at == at(300)
    # the engine is switched off: clears
    h.readings([("b1", "rpm", 710, 0.0)])
    assert states(h.of("idling")) == ["opened", "cleared"]


def panic(t: float, **data: object) -> Event:
    return Event(at(t), "bus/b1", "panic", data=data)


def test_panic_is_immediate_critical_and_needs_ack() -> None:
    h = Harness()
    h.events([panic(0, history=True)])
    assert h.alerts == []  # a history packet replays the past: nothing live
    got = h.events([panic(5)])
    assert len(got) == 1 and got[0].severity is Severity.CRITICAL and got[0].needs_ack
    assert got[0].opened_at == at(5)
    assert h.events([panic(6), panic(9)]) == []  # pressed again: still the one alert
    cleared = h.events([panic(30, active=False)])
    assert states(cleared) == ["cleared"] and cleared[0].evidence["presses"] == 3
    # acknowledging a new one clears it too
    opened = h.events([panic(60)])[0]
    acked = h.rules.acknowledge(opened.id, "control-room", at(90))
    assert acked is not None and acked.acked_by == "control-room" and not acked.is_open
    assert h.rules.acknowledge(opened.id, "control-room", at(91)) is None


def dtc(t: float, spn: int, fmi: int, lamp: str = "amber", **extra: object) -> Event:
    data = {"spn": spn, "fmi": fmi, "occurrence": 1, "lamp": lamp, **extra}
    return Event(at(t), "bus/b1", "dtc", data=data)


def test_dtc_lamps_history_and_clearing() -> None:
    h = Harness()
    assert h.events([dtc(0, 110, 0, "red", history=True)]) == []
    got = h.events([dtc(10, 110, 0, "red"), dtc(10, 100, 1, "amber")])
    by_spn = {a.evidence["spn"]: a for a in got}
    assert by_spn[110].severity is Severity.CRITICAL and by_spn[100].severity is Severity.WARNING
    assert by_spn[110].id != by_spn[100].id
    # the same DM1 again: nothing new
    assert h.events([dtc(20, 110, 0, "red"), dtc(20, 100, 1, "amber")]) == []
    # a newer DM1 without SPN 100: that fault is no longer active
    got = h.events([dtc(30, 110, 0, "red")])
    assert [(a.evidence["spn"], a.state.value) for a in got] == [(100, "cleared")]
    # the lamp goes from red to amber: one update of the open alert
    got = h.events([dtc(40, 110, 0, "amber")])
    assert states(got) == ["updated"] and got[0].severity is Severity.WARNING
    # an empty DM1 (SPN 0, FMI 0): everything clears, once
    got = h.events([dtc(50, 0, 0, "")])
    assert [(a.evidence["spn"], a.state.value) for a in got] == [(110, "cleared")]
    assert h.events([dtc(60, 0, 0, "")]) == []
    # a fault reported explicitly inactive
    h.events([dtc(70, 523, 2, "protect")])
    got = h.events([dtc(80, 523, 2, "protect", active=False)])
    assert states(got) == ["cleared"]


def test_malformed_events_are_ignored() -> None:
    h = Harness()
    bad = [
        Event(at(0), "bus/b1", "dtc", data={"spn": "abc", "fmi": 1}),
        Event(at(0), "bus/b1", "dtc", data={"fmi": 1}),
        Event(at(0), "dma-01", "panic"),  # not a bus
        Event(at(0), "bus/b1/extra", "panic"),
    ]
    assert h.events(bad) == []


def test_nan_readings_neither_hold_nor_clear() -> None:
    h = Harness()
    rows = [("b1", "coolant_c", t, 110.0 if t % 20 == 0 else NAN) for t in range(0, 70, 10)]
    h.readings(rows)
    got = h.of("engine_overheat")
    assert len(got) == 1 and got[0].opened_at == at(60)
    h.readings([("b1", "coolant_c", t, NAN) for t in range(70, 300, 10)])
    assert states(h.of("engine_overheat")) == ["opened"]


def test_a_long_silence_restarts_the_timer() -> None:
    h = Harness()
    h.readings([("b1", "coolant_c", 0, 110.0), ("b1", "coolant_c", 30, 110.0)])
    # 200 s of silence (over max_gap_s = 120): nothing says it stayed hot
    h.readings([("b1", "coolant_c", t, 110.0) for t in (230, 260)])
    assert h.of("engine_overheat") == []
    h.readings([("b1", "coolant_c", 290, 110.0)])
    assert [a.opened_at for a in h.of("engine_overheat")] == [at(290)]


def test_late_and_duplicate_readings_are_skipped() -> None:
    h = Harness()
    h.readings([("b1", "coolant_c", t, 90.0) for t in range(300, 400, 30)])
    # hot readings older than what was judged arrive late: they cannot open anything
    h.readings([("b1", "coolant_c", t, 120.0) for t in range(0, 300, 30)])
    # a hot duplicate of the last time, then normal again
    h.readings([("b1", "coolant_c", 390, 120.0), ("b1", "coolant_c", 420, 90.0)])
    assert h.alerts == []


def test_oil_and_rpm_of_one_snapshot_are_judged_together() -> None:
    h = Harness()
    # each CAN snapshot carries oil and rpm with the same time; the engine starts at t=5
    snapshots = [(0, 50.0, 0.0), (5, 50.0, 900.0), (10, 50.0, 900.0), (15, 50.0, 900.0)]
    rows = [
        r for t, oil, rpm in snapshots for r in (("b1", "oil_kpa", t, oil), ("b1", "rpm", t, rpm))
    ]
    h.readings(rows)
    got = h.of("low_oil_pressure")
    assert len(got) == 1 and got[0].started_at == at(5) and got[0].opened_at == at(15)


def dm1(t: float, *faults: tuple[int, int, str], live: bool = True) -> Event:
    """A DTC event as the MQTT driver emits it: one per DM1, all its faults in a list."""
    data = {
        "faults": [{"spn": s, "fmi": f, "oc": 1, "lamp": lamp} for s, f, lamp in faults],
        "lamps": {"mil": 0, "red": 1, "amber": 0, "protect": 0},
        "live": live,
        "seq": 7,
    }
    return Event(at(t), "bus/b1", "dtc", "", data)


def test_dtc_events_in_the_mqtt_driver_shape() -> None:
    h = Harness()
    assert h.events([dm1(0, (110, 0, "red"), live=False)]) == []  # history: nothing live
    got = h.events([dm1(10, (110, 0, "red"), (100, 1, "amber"))])
    assert sorted((a.evidence["spn"], a.severity) for a in got) == [
        (100, Severity.WARNING),
        (110, Severity.CRITICAL),
    ]
    assert got[0].evidence["occurrence"] == 1
    assert h.events([dm1(20, (110, 0, "red"), (100, 1, "amber"))]) == []
    got = h.events([dm1(30, (110, 0, "red"))])
    assert [(a.evidence["spn"], a.state.value) for a in got] == [(100, "cleared")]
    assert got[0].evidence["cleared_because"] == "absent from a newer DM1"
    got = h.events([dm1(40)])  # an empty DM1: no fault is active any more
    assert [(a.evidence["spn"], a.state.value) for a in got] == [(110, "cleared")]
    assert h.events([dm1(50, (523, 2, "off"))])[0].severity is Severity.INFO


def test_panic_in_the_mqtt_driver_shape() -> None:
    h = Harness()
    data = {"lat": LAT0, "lon": LON0, "seq": 3, "via": "ais140"}
    assert h.events([Event(at(0), "bus/b1", "panic", "", {**data, "live": False})]) == []
    got = h.events([Event(at(5), "bus/b1", "panic", "", {**data, "live": True})])
    assert states(got) == ["opened"] and got[0].needs_ack and got[0].evidence["via"] == "ais140"
    got = h.events([Event(at(9), "bus/b1", "panic_cleared", "", {**data, "live": True})])
    assert states(got) == ["cleared"]
