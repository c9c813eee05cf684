"""The simulated fleet: buses that drive routes and talk like tracking units.

    Fleet.advance(t_ms) --> [Message(topic, payload, qos)]   (pure: no I/O, no clock)

Each bus moves along its route (cruise, slow down, dwell at stops, turn round at
the end), runs an engine model (rpm, coolant warming up, oil pressure with rpm,
fuel, battery) and publishes like an AIS-140 unit with a J1939 tap:

    pvt     every 5-10 s (each bus its own period)  JSON, or an AIS-140 packet, or both
    can     every 30 s                              decoded signals, or raw J1939 frames
    dtc     on change of the active DM1 faults      decoded, or raw DM1 / TP.BAM frames
    health  every 60 s
    alert   on a panic press (and its release)

Everything comes from one `random.Random(seed)` per bus and the sim time, so the
same seed gives the same messages byte for byte. Faults are scheduled per bus:

    gps_jump     one fix ~5 km off                   silence      nothing published
    overheat     coolant climbs past 110 C           oil_drop     oil pressure ~60 kPa
    battery_sag  system voltage ~21.5 V              panic        panic alert, then released
    dtc          DM1: SPN 110 FMI 0 (red) and        detour       driving ~400 m off the route
                 SPN 100 FMI 1 (amber), over TP.BAM
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Mapping
from typing import Literal, Protocol

from firmware_sim.ais140.encoder import gwsim_location
from firmware_sim.buses import ecu
from firmware_sim.buses.routes import Route, offset

FaultKind = Literal[
    "gps_jump", "silence", "overheat", "oil_drop", "battery_sag", "panic", "dtc", "detour"
]
FAULT_KINDS: tuple[str, ...] = (
    "gps_jump",
    "silence",
    "overheat",
    "oil_drop",
    "battery_sag",
    "panic",
    "dtc",
    "detour",
)
PvtFormat = Literal["json", "ais140", "both"]
CanFormat = Literal["signals", "frames"]
_ECU = ecu.EcuEncoder()
TOPIC_VERSION = "v1"


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    bus: int  # index in the fleet
    at_s: float  # sim seconds after the start
    duration_s: float = 120.0

    @classmethod
    def parse(cls, text: str) -> Fault:
        """'overheat:3:120' or 'overheat:3:120:300' (kind:bus:at_s[:duration_s])."""
        parts = text.split(":")
        if len(parts) not in (3, 4) or parts[0] not in FAULT_KINDS:
            raise ValueError(
                f"fault {text!r} is not kind:bus:at_s[:duration_s] with kind one of "
                + ", ".join(FAULT_KINDS)
            )
        try:
            bus, at = int(parts[1]), float(parts[2])
            duration = float(parts[3]) if len(parts) == 4 else 120.0
        except ValueError:
            raise ValueError(f"fault {text!r}: bus is a whole number, times are seconds") from None
        return cls(parts[0], bus, at, duration)  # type: ignore[arg-type]

    def active(self, t_s: float) -> bool:
        return self.at_s <= t_s < self.at_s + self.duration_s


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 1


def unit_topic(prefix: str, vehicle: str, kind: str) -> str:
    """Where a unit publishes: `<prefix>/v1/<vehicle>/<kind>`, as its firmware is set up."""
    return f"{prefix}/{TOPIC_VERSION}/{vehicle}/{kind}"


@dataclasses.dataclass(frozen=True, slots=True)
class FleetSettings:
    buses: int = 10
    seed: int = 1
    start_ms: int = 0  # sim time 0 in ms since the epoch
    prefix: str = "pmpml"
    pvt_format: PvtFormat = "json"
    can_format: CanFormat = "signals"
    qos: int = 1
    can_period_s: float = 30.0
    health_period_s: float = 60.0
    faults: tuple[Fault, ...] = ()


def vehicle_id(i: int) -> str:
    """Pune-style registration numbers, one per bus: MH12-PM-0001..."""
    return f"MH12-PM-{i + 1:04d}"


class Bus:
    def __init__(self, index: int, route: Route, settings: FleetSettings) -> None:
        self.index = index
        self.id = vehicle_id(index)
        self.reg = "".join(c for c in self.id.upper() if c.isalnum())  # MH12PM0001
        self.imei = f"86{settings.seed % 1000:03d}{index:010d}"[:15]
        self.route = route
        self.settings = settings
        self.rng = random.Random(f"{settings.seed}:{index}")
        self.pvt_period = self.rng.uniform(5.0, 10.0)
        self.next_pvt = self.rng.uniform(0.0, self.pvt_period)
        self.next_can = self.rng.uniform(0.0, settings.can_period_s)
        self.next_health = self.rng.uniform(0.0, settings.health_period_s)
        self.s = self.rng.uniform(0.0, route.length_m)  # position along the route
        self.forward = self.rng.random() < 0.5
        self.speed = 0.0  # m/s
        self.cruise = self.rng.uniform(7.0, 11.0)  # 25-40 km/h
        self.dwell = 0.0
        self.stops = route.stop_distances()
        self.coolant = self.rng.uniform(25.0, 40.0)
        self.fuel = self.rng.uniform(40.0, 95.0)
        self.seq: dict[str, int] = {}
        self.frame = 0
        self.active_dtc: tuple[tuple[int, int, int], ...] = ()
        self.panic = False
        self.t = 0.0
        self.faults = [f for f in settings.faults if f.bus == index]
        self.jumped: set[Fault] = set()

    def _fault(self, kind: str) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.active(self.t):
                return f
        return None

    def _next_seq(self, kind: str) -> int:
        n = self.seq.get(kind, -1) + 1
        self.seq[kind] = n
        return n

    # -- physics, one step of dt seconds ----------------------------------------------

    def step(self, dt: float) -> None:
        self.t += dt
        if self.dwell > 0:
            self.dwell -= dt
            self.speed = 0.0
        else:
            ahead = self._distance_to_next_stop()
            target = self.cruise if ahead > 60 else max(1.5, self.cruise * ahead / 60)
            accel = 1.0 if target > self.speed else -1.5
            self.speed = (
                max(0.0, min(target, self.speed + accel * dt))
                if accel > 0
                else max(target, self.speed + accel * dt)
            )
            move = self.speed * dt
            if ahead <= move + 0.5:
                move = ahead
                self.dwell = self.rng.uniform(15.0, 40.0)
            self.s += move if self.forward else -move
            if self.s >= self.route.length_m or self.s <= 0.0:
                self.s = min(max(self.s, 0.0), self.route.length_m)
                self.forward = not self.forward
                self.dwell = self.rng.uniform(60.0, 180.0)  # layover at the terminus
        warm = 88.0 if self._fault("overheat") is None else 114.0
        rate = 0.02 if self._fault("overheat") is None else 0.05
        self.coolant += (warm - self.coolant) * min(1.0, rate * dt)
        self.fuel = max(5.0, self.fuel - self.fuel_lph * dt / 3600 / 2.0)

    def _distance_to_next_stop(self) -> float:
        if self.forward:
            later = self.stops[self.stops > self.s + 0.5]
            return float(later[0] - self.s) if len(later) else self.route.length_m - self.s
        earlier = self.stops[self.stops < self.s - 0.5]
        return float(self.s - earlier[-1]) if len(earlier) else self.s

    @property
    def rpm(self) -> float:
        return 650.0 + self.speed * 120.0

    @property
    def oil_kpa(self) -> float:
        return 60.0 if self._fault("oil_drop") else 120.0 + self.rpm * 0.15

    @property
    def fuel_lph(self) -> float:
        return 2.5 + self.speed * 1.6

    @property
    def battery_v(self) -> float:
        return 21.5 if self._fault("battery_sag") else 27.6

    def position(self) -> tuple[float, float, float]:
        lat, lon, heading = self.route.at(self.s)
        if not self.forward:
            heading = (heading + 180.0) % 360.0
        if self._fault("detour"):
            side = math.radians(heading + 90.0)
            lat, lon = offset(lat, lon, 400.0 * math.cos(side), 400.0 * math.sin(side))
        jump = self._fault("gps_jump")
        if jump is not None and jump not in self.jumped:
            self.jumped.add(jump)
            lat, lon = offset(lat, lon, 3000.0, 4000.0)  # one fix 5 km away
        return lat, lon, heading

    # -- messages ----------------------------------------------------------------------

    def messages(self, now_ms: int) -> list[Message]:
        """What the unit publishes at sim time `self.t` (after `step`)."""
        out: list[Message] = []
        silent = self._fault("silence") is not None
        if self.t >= self.next_pvt:
            self.next_pvt += self.pvt_period
            fix = self.position()  # consumed even when silent, so a jump is not deferred
            if not silent:
                out.extend(self._pvt(now_ms, *fix))
        if self.t >= self.next_can:
            self.next_can += self.settings.can_period_s
            if not silent:
                out.append(self._can(now_ms))
        if self.t >= self.next_health:
            self.next_health += self.settings.health_period_s
            if not silent:
                out.append(self._health(now_ms))
        dtc = ((110, 0, 1), (100, 1, 1)) if self._fault("dtc") else ()
        if dtc != self.active_dtc and not silent:
            self.active_dtc = dtc
            out.append(self._dm1(now_ms))
        panic = self._fault("panic") is not None
        if panic != self.panic and not silent:
            self.panic = panic
            out.append(self._alert(now_ms, "panic" if panic else "panic_cleared"))
        return out

    def _topic(self, kind: str) -> str:
        return unit_topic(self.settings.prefix, self.id, kind)

    def _json(self, kind: str, body: Mapping[str, object]) -> Message:
        payload = {"v": 1, "vehicle": self.id, **body, "seq": self._next_seq(kind)}
        return Message(self._topic(kind), json.dumps(payload).encode(), self.settings.qos)

    def _pvt(self, now_ms: int, lat: float, lon: float, heading: float) -> list[Message]:
        out = []
        fmt = self.settings.pvt_format
        speed = round(self.speed * 3.6, 1)
        if fmt in ("json", "both"):
            body = {
                "ts": now_ms,
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "speed_kmh": speed,
                "heading": round(heading, 1),
                "fix": 3,
                "sats": 9 + self.index % 4,
            }
            out.append(self._json("pvt", body))
        if fmt in ("ais140", "both"):
            out.append(self._ais140(now_ms, lat, lon, speed, heading))
        return out

    def _ais140(self, now_ms: int, lat: float, lon: float, speed: float, heading: float) -> Message:
        self.frame = (self.frame % 999_999) + 1
        stamp = _utc(now_ms)
        panic = self._fault("panic") is not None
        values = {
            "header": "EPB" if panic else "NRM",
            "vendor_id": "GWSIM",
            "firmware": "1.0.0",
            "packet_type": "EA" if panic else "NR",
            "alert_id": "10" if panic else "01",
            "packet_status": "L",
            "imei": self.imei,
            "vehicle_reg": self.reg,
            "gps_fix": "1",
            "date": stamp[0],
            "time": stamp[1],
            "lat": f"{abs(lat):.6f}",
            "lat_dir": "N" if lat >= 0 else "S",
            "lon": f"{abs(lon):.6f}",
            "lon_dir": "E" if lon >= 0 else "W",
            "speed_kmh": f"{speed:.1f}",
            "heading": f"{heading:.1f}",
            "sats": "10",
            "altitude_m": "560",
            "pdop": "1.1",
            "hdop": "0.8",
            "operator": "BSNL",
            "ignition": "1",
            "main_power": "1",
            "main_v": f"{self.battery_v:.1f}",
            "battery_v": "4.1",
            "emergency": "1" if panic else "0",
            "tamper": "C",
            "gsm_signal": "24",
            "mcc": "404",
            "mnc": "22",
            "lac": "1A2B",
            "cell_id": "3C4D",
            "frame_number": str(self.frame),
            "odometer_km": f"{self.t * 0.008:.1f}",
            "digital_inputs": "1000",
            "digital_outputs": "00",
            "analog_input": "0.0",
        }
        return Message(self._topic("ais140"), gwsim_location(values), self.settings.qos)

    def _signals(self) -> dict[str, float]:
        return {
            "rpm": round(self.rpm, 1),
            "coolant_c": round(self.coolant, 1),
            "oil_kpa": round(self.oil_kpa, 1),
            "fuel_lph": round(self.fuel_lph, 2),
            "battery_v": round(self.battery_v, 2),
            "speed_kmh": round(self.speed * 3.6, 2),
            "fuel_pct": round(self.fuel, 1),
        }

    def _can(self, now_ms: int) -> Message:
        if self.settings.can_format == "signals":
            return self._json("can", {"ts": now_ms, "signals": self._signals()})
        frames = _ECU.frames(self._signals())
        body = [{"id": i, "data": d.hex()} for i, d in frames]
        return self._json("can", {"ts": now_ms, "frames": body})

    def _dm1(self, now_ms: int) -> Message:
        red = any(spn == 110 for spn, _, _ in self.active_dtc)
        amber = bool(self.active_dtc)
        if self.settings.can_format == "signals":
            faults = [{"spn": s, "fmi": f, "oc": o} for s, f, o in self.active_dtc]
            lamps = {"mil": 0, "red": int(red), "amber": int(amber), "protect": 0}
            body: dict[str, object] = {"ts": now_ms, "lamps": lamps, "faults": faults}
            return self._json("dtc", body)
        frames = ecu.dm1_frames(ecu.dm1(self.active_dtc, red=red, amber=amber))
        return self._json(
            "dtc", {"ts": now_ms, "frames": [{"id": i, "data": d.hex()} for i, d in frames]}
        )

    def _health(self, now_ms: int) -> Message:
        body = {
            "ts": now_ms,
            "unit_battery_v": 4.1,
            "main_v": round(self.battery_v, 2),
            "gsm_csq": 20 + self.index % 8,
            "firmware": "gwsim-1.0.0",
            "uptime_s": int(self.t),
            "ignition": True,
        }
        return self._json("health", body)

    def _alert(self, now_ms: int, kind: str) -> Message:
        lat, lon, _ = self.route.at(self.s)
        body = {"ts": now_ms, "kind": kind, "lat": round(lat, 6), "lon": round(lon, 6)}
        return self._json("alert", body)


def _utc(ms: int) -> tuple[str, str]:
    import datetime as dt  # noqa: PLC0415 - only the AIS-140 path needs it

    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return stamp.strftime("%d%m%Y"), stamp.strftime("%H%M%S")


class RouteSource(Protocol):
    def __len__(self) -> int: ...

    def route(self, index: int) -> Route: ...


class Fleet:
    """N buses on routes, advanced in fixed steps of sim time."""

    def __init__(self, settings: FleetSettings, routes: RouteSource) -> None:
        if settings.buses < 1:
            raise ValueError("a fleet needs at least one bus")
        if len(routes) == 0:
            raise ValueError("a fleet needs at least one route")
        for f in settings.faults:
            if not 0 <= f.bus < settings.buses:
                raise ValueError(f"fault on bus {f.bus}, but the fleet has {settings.buses} buses")
        self.settings = settings
        pick = random.Random(settings.seed)
        self.buses = [
            Bus(i, routes.route(pick.randrange(len(routes))), settings)
            for i in range(settings.buses)
        ]
        self.t_s = 0.0

    def advance(self, dt_s: float = 1.0) -> list[Message]:
        """Step every bus by `dt_s` and return what they publish, in bus order."""
        self.t_s += dt_s
        now_ms = self.settings.start_ms + round(self.t_s * 1000)
        out: list[Message] = []
        for bus in self.buses:
            bus.step(dt_s)
            out.extend(bus.messages(now_ms))
        return out
