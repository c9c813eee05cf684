"""Settings of the vehicle rules: thresholds per vehicle model, speed zones, routes.

In TOML (the lead's loader maps the section to `VehicleRulesSettings`):

    [vehicle_rules]
    default_model = "diesel-12m"
    gtfs_path = "/srv/gtfs/pmpml.zip"    # a GTFS zip with shapes.txt; "" (default): none
    assignments = { "MH12-KQ-4321" = "1100023" }        # vehicle -> GTFS shape_id

    [vehicle_rules.vehicle_models]
    "MH12-KQ-4321" = "cng-12m"

    [vehicle_rules.models.diesel-12m]
    speed_limit_kmh = 80.0
    [vehicle_rules.models.cng-12m]
    coolant_max_c = 100.0

    [[vehicle_rules.zones]]
    name = "school-fc-road"
    limit_kmh = 25.0
    polygon = [[18.52, 73.84], [18.53, 73.84], [18.53, 73.85], [18.52, 73.85]]  # [lat, lon]

Every model absent from `models` falls back to `ModelThresholds()` defaults.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclasses.dataclass(frozen=True, slots=True)
class ModelThresholds:
    """Thresholds of one vehicle model. Each *_clear_* value is the hysteresis
    edge a condition must cross back over before it clears."""

    fix_period_s: float = dataclasses.field(default=10.0, metadata=_help("expected GPS fix period"))
    stale_factor: float = dataclasses.field(
        default=3.0, metadata=_help("stale after this many fix periods without a fix")
    )
    offline_after_s: float = dataclasses.field(
        default=600.0, metadata=_help("offline after this long with no data at all")
    )
    max_jump_kmh: float = dataclasses.field(
        default=120.0, metadata=_help("implied speed above which a fix is a GPS jump")
    )
    speed_limit_kmh: float = dataclasses.field(
        default=80.0, metadata=_help("governor cap; zones may lower it")
    )
    overspeed_hold_s: float = 10.0
    overspeed_clear_margin_kmh: float = 5.0
    overspeed_clear_hold_s: float = 5.0
    harsh_brake_mps2: float = dataclasses.field(
        default=3.0, metadata=_help("deceleration (positive) that counts as harsh braking")
    )
    harsh_accel_mps2: float = 2.5
    harsh_max_dt_s: float = dataclasses.field(
        default=15.0, metadata=_help("no acceleration is derived across a longer gap")
    )
    coolant_max_c: float = 105.0
    coolant_clear_c: float = 100.0
    coolant_hold_s: float = 60.0
    oil_min_kpa: float = 100.0
    oil_clear_kpa: float = 120.0
    oil_running_rpm: float = dataclasses.field(
        default=600.0, metadata=_help("the engine runs above this rpm")
    )
    oil_hold_s: float = 10.0
    battery_min_v: float = dataclasses.field(
        default=23.0, metadata=_help("under-voltage of the (24 V) system")
    )
    battery_clear_v: float = 24.0
    battery_hold_s: float = 60.0
    idle_min_rpm: float = dataclasses.field(default=0.0, metadata=_help("idling: rpm above this"))
    idle_max_speed_mps: float = dataclasses.field(
        default=0.5, metadata=_help("idling: speed at or below this")
    )
    idle_clear_speed_mps: float = 1.5
    idle_hold_s: float = 300.0
    clear_hold_s: float = dataclasses.field(
        default=30.0, metadata=_help("how long a health condition must stay clear to clear")
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or (value <= 0 and f.name not in _MAY_BE_ZERO):
                raise ValueError(f"{f.name} must be a positive number, got {value}")
        pairs = [
            ("coolant_clear_c", "coolant_max_c", True),
            ("oil_clear_kpa", "oil_min_kpa", False),
            ("battery_clear_v", "battery_min_v", False),
            ("idle_clear_speed_mps", "idle_max_speed_mps", False),
        ]
        for clear, trip, below in pairs:
            ok = (
                getattr(self, clear) <= getattr(self, trip)
                if below
                else (getattr(self, clear) >= getattr(self, trip))
            )
            if not ok:
                side = "at or below" if below else "at or above"
                raise ValueError(
                    f"{clear} ({getattr(self, clear)}) must be {side} {trip} "
                    f"({getattr(self, trip)}): it is the hysteresis edge"
                )


_MAY_BE_ZERO = {"idle_min_rpm", "overspeed_clear_margin_kmh", "overspeed_clear_hold_s"}


@dataclasses.dataclass(frozen=True, slots=True)
class SpeedZone:
    """A polygon with a lower speed limit (school, market, depot)."""

    name: str
    limit_kmh: float
    polygon: tuple[tuple[float, float], ...]  # [lat, lon] vertices

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a speed zone needs a name")
        if not (math.isfinite(self.limit_kmh) and self.limit_kmh > 0):
            raise ValueError(f"zone {self.name!r}: limit_kmh must be positive")
        pts = tuple(tuple(float(c) for c in p) for p in self.polygon)
        if len(pts) < 3 or any(len(p) != 2 for p in pts):
            raise ValueError(
                f"zone {self.name!r}: polygon needs at least 3 [lat, lon] pairs, "
                "e.g. polygon = [[18.52, 73.84], [18.53, 73.84], [18.53, 73.85]]"
            )
        if any(not (-90 <= la <= 90 and -180 <= lo <= 180) for la, lo in pts):
            raise ValueError(f"zone {self.name!r}: a vertex is not a valid [lat, lon]")
        object.__setattr__(self, "polygon", pts)


@dataclasses.dataclass(frozen=True, slots=True)
class VehicleRulesSettings:
    models: dict[str, ModelThresholds] = dataclasses.field(
        default_factory=lambda: {"default": ModelThresholds()},
        metadata=_help("thresholds per vehicle model"),
    )
    vehicle_models: dict[str, str] = dataclasses.field(
        default_factory=dict, metadata=_help("vehicle id -> model name")
    )
    default_model: str = "default"
    zones: tuple[SpeedZone, ...] = ()
    gtfs_path: str = dataclasses.field(
        default="", metadata=_help("GTFS zip with shapes, for route deviation and headways")
    )
    assignments: dict[str, str] = dataclasses.field(
        default_factory=dict, metadata=_help("vehicle id -> GTFS shape_id it runs on")
    )
    utc_offset_minutes: int = dataclasses.field(
        default=330, metadata=_help("local time of the service day (IST = 330)")
    )
    service_start_h: float = dataclasses.field(
        default=5.0, metadata=_help("stale/offline are judged only in service hours")
    )
    service_end_h: float = 23.5
    deviation_m: float = 150.0
    deviation_clear_m: float = 100.0
    deviation_fixes: int = 3
    bunching_ratio: float = dataclasses.field(
        default=0.5, metadata=_help("headway below this share of the scheduled one")
    )
    gapping_ratio: float = 1.5
    headway_clear_band: float = 0.1
    headway_hold_s: float = 60.0
    headway_max_age_s: float = dataclasses.field(
        default=120.0, metadata=_help("buses without a fix this recent are left out")
    )
    scheduled_headways_s: dict[str, float] = dataclasses.field(
        default_factory=dict, metadata=_help("shape_id -> scheduled headway (overrides GTFS)")
    )
    route_speeds_mps: dict[str, float] = dataclasses.field(
        default_factory=dict, metadata=_help("shape_id -> running speed (overrides GTFS)")
    )
    default_route_speed_mps: float = 5.0
    dtc_snapshots: bool = dataclasses.field(
        default=True,
        metadata=_help("the DTC events of one time are a whole DM1: faults absent from it clear"),
    )
    max_gap_s: float = dataclasses.field(
        default=120.0, metadata=_help("a silence this long restarts a condition's timer")
    )

    def __post_init__(self) -> None:
        if self.default_model not in self.models:
            object.__setattr__(
                self, "models", {**self.models, self.default_model: ModelThresholds()}
            )
        unknown = sorted({m for m in self.vehicle_models.values() if m not in self.models})
        if unknown:
            raise ValueError(
                f"vehicle_models names model(s) {unknown} with no [models.<name>] table; "
                f"known: {sorted(self.models)}"
            )
        if not self.deviation_clear_m <= self.deviation_m:
            raise ValueError("deviation_clear_m must be at or below deviation_m")
        if not 0 < self.bunching_ratio < 1 < self.gapping_ratio:
            raise ValueError("need 0 < bunching_ratio < 1 < gapping_ratio")
        if self.deviation_fixes < 1:
            raise ValueError("deviation_fixes must be at least 1")
        if not 0 <= self.service_start_h < 24 or not 0 < self.service_end_h <= 48:
            raise ValueError("service hours are hours of the local day, e.g. 5.0 to 23.5")


class ThresholdTable:
    """The models' thresholds as one array per field, indexed by model number,
    so a batch's thresholds are one fancy index: `table.of("coolant_max_c", model_idx)`."""

    def __init__(self, models: Mapping[str, ModelThresholds]) -> None:
        self.names = list(models)
        self.index = {name: i for i, name in enumerate(self.names)}
        self._cols = {
            f.name: np.asarray([getattr(models[m], f.name) for m in self.names], np.float64)
            for f in dataclasses.fields(ModelThresholds)
        }

    def of(self, field: str, model: NDArray[np.intp]) -> NDArray[np.float64]:
        return self._cols[field][model]

    def ns(self, field: str, model: NDArray[np.intp]) -> NDArray[np.int64]:
        """A duration field in seconds, as int64 ns."""
        return np.round(self._cols[field][model] * 1e9).astype(np.int64)
