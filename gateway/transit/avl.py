"""AVL CSV files, as the replay contract defines them: one GPS fix a row,

    vehicle_id,timestamp,speed,route_id,trip_id,latitude,longitude,trip_headsign

with ISO 8601 timestamps carrying their offset and speed in m/s. route_id, trip_id,
speed and trip_headsign may be empty. A bad row is refused naming the file, row and
field.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path

COLUMNS = ("vehicle_id", "timestamp", "latitude", "longitude")


class AvlError(ValueError):
    """An AVL file that cannot be read; names the file, row and field."""


@dataclasses.dataclass(frozen=True, slots=True)
class AvlFix:
    vehicle: str
    ts_s: float  # epoch seconds
    lat: float
    lon: float
    route_id: str
    trip_id: str


def read_avl(path: str | Path) -> list[AvlFix]:
    """The file's fixes in time order (stable for equal times)."""
    out: list[AvlFix] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise AvlError(f"{path}: lacks column(s) {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                out.append(_fix(row, f"{path} row {line}"))
    except OSError as err:
        raise AvlError(f"{path}: cannot read the AVL file: {err}") from None
    out.sort(key=lambda x: x.ts_s)
    return out


def _fix(row: dict[str, str], where: str) -> AvlFix:
    vehicle = (row["vehicle_id"] or "").strip()
    if not vehicle:
        raise AvlError(f"{where}, field vehicle_id: is empty")
    text = (row["timestamp"] or "").strip()
    try:
        ts = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AvlError(f"{where}, field timestamp: {text!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise AvlError(f"{where}, field timestamp: {text!r} has no UTC offset")
    coords = []
    for field, bound in (("latitude", 90.0), ("longitude", 180.0)):
        raw = (row[field] or "").strip()
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not -bound <= value <= bound:
            raise AvlError(f"{where}, field {field}: {raw!r} is not a number in ±{bound:g}")
        coords.append(value)
    return AvlFix(
        vehicle,
        ts.timestamp(),
        coords[0],
        coords[1],
        (row.get("route_id") or "").strip(),
        (row.get("trip_id") or "").strip(),
    )
