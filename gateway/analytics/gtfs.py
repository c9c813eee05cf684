"""Static GTFS: the shapes, trips, stop times and service calendar a route rule needs.

Read straight from the feed's zip. Only what the vehicle rules use is kept:
shapes as lat/lon arrays (route deviation), and per trip its shape, service
and first/last stop times (scheduled headway and speed for bunching and
gapping). Times are seconds after the service day's noon minus 12 h, as GTFS
defines them, so `25:10:00` is 90,600 s.

    cairns_gtfs.zip ──load_gtfs──► GtfsFeed(shapes, trips, calendar)
                                     ├─ shape(id).polyline() ──► geo.Polyline
                                     └─ scheduled_headway_s(shape, date, second of day)
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.analytics.geo import Polyline


class GtfsError(ValueError):
    """A feed that cannot be read: a missing file or column, or a bad value (names file and row)."""


def parse_gtfs_time(text: str) -> int:
    """`HH:MM:SS` (hours may exceed 24) to seconds."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"GTFS time {text!r} is not HH:MM:SS")
    h, m, s = (int(p) for p in parts)
    if not (0 <= m < 60 and 0 <= s < 60 and h >= 0):
        raise ValueError(f"GTFS time {text!r} is out of range")
    return h * 3600 + m * 60 + s


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Shape:
    shape_id: str
    lat: NDArray[np.float64]  # in shape_pt_sequence order
    lon: NDArray[np.float64]

    def polyline(self) -> Polyline:
        return Polyline.from_latlon(self.lat, self.lon)


@dataclasses.dataclass(frozen=True, slots=True)
class Trip:
    trip_id: str
    route_id: str
    service_id: str
    shape_id: str
    direction_id: int
    start_s: int = -1  # first departure, seconds of the service day; -1 without stop times
    end_s: int = -1  # last arrival


@dataclasses.dataclass(frozen=True, slots=True)
class Service:
    service_id: str
    weekdays: tuple[bool, ...]  # Monday first
    start: dt.date
    end: dt.date


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class GtfsFeed:
    shapes: dict[str, Shape]
    trips: dict[str, Trip]
    services: dict[str, Service]
    exceptions: dict[tuple[str, dt.date], bool]  # calendar_dates: True added, False removed

    def shape(self, shape_id: str) -> Shape:
        try:
            return self.shapes[shape_id]
        except KeyError:
            raise KeyError(f"shape {shape_id!r} is not in the feed") from None

    def services_on(self, day: dt.date) -> set[str]:
        """Service ids running on `day`, from calendar.txt and calendar_dates.txt."""
        out = {
            s.service_id
            for s in self.services.values()
            if s.start <= day <= s.end and s.weekdays[day.weekday()]
        }
        for (sid, d), added in self.exceptions.items():
            if d == day:
                if added:
                    out.add(sid)
                else:
                    out.discard(sid)
        return out

    def trip_starts(self, shape_id: str, services: set[str] | None = None) -> NDArray[np.int64]:
        """Sorted first-departure times (s of day) of the trips on a shape."""
        starts = [
            t.start_s
            for t in self.trips.values()
            if t.shape_id == shape_id
            and t.start_s >= 0
            and (services is None or t.service_id in services)
        ]
        return np.sort(np.asarray(starts, np.int64))

    def scheduled_headway_s(
        self,
        shape_id: str,
        second_of_day: float,
        services: set[str] | None = None,
        window_s: float = 3600.0,
    ) -> float:
        """The median gap between consecutive trip starts on the shape within
        ±window of the time; NaN when fewer than two trips start in it."""
        starts = self.trip_starts(shape_id, services)
        near = starts[np.abs(starts - second_of_day) <= window_s]
        if len(near) < 2:
            return float("nan")
        gaps = np.diff(np.unique(near))
        return float(np.median(gaps)) if len(gaps) else float("nan")

    def scheduled_speed_mps(self, shape_id: str) -> float:
        """Median over the shape's trips of shape length / scheduled run time; NaN if unknown."""
        runs = [
            t.end_s - t.start_s
            for t in self.trips.values()
            if t.shape_id == shape_id and t.end_s > t.start_s >= 0
        ]
        if not runs:
            return float("nan")
        return self.shape(shape_id).polyline().length_m / float(np.median(runs))


def _rows(zf: zipfile.ZipFile, name: str, needed: tuple[str, ...]) -> Iterator[dict[str, str]]:
    try:
        raw = zf.open(name)
    except KeyError:
        raise GtfsError(f"{zf.filename}: {name} is missing from the feed") from None
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.DictReader(text)
        missing = [c for c in needed if c not in (reader.fieldnames or ())]
        if missing:
            raise GtfsError(f"{zf.filename}: {name} lacks column(s) {', '.join(missing)}")
        yield from reader


def _date(text: str, where: str) -> dt.date:
    try:
        return dt.datetime.strptime(text.strip(), "%Y%m%d").date()
    except ValueError:
        raise GtfsError(f"{where}: date {text!r} is not YYYYMMDD") from None


def load_shapes(zf: zipfile.ZipFile) -> dict[str, Shape]:
    """shapes.txt of an open feed, each shape's points in sequence order."""
    ids: list[str] = []
    seq: list[int] = []
    lat: list[float] = []
    lon: list[float] = []
    cols = ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence")
    for i, row in enumerate(_rows(zf, "shapes.txt", cols), start=2):
        try:
            seq.append(int(row["shape_pt_sequence"]))
            lat.append(float(row["shape_pt_lat"]))
            lon.append(float(row["shape_pt_lon"]))
        except ValueError as err:
            raise GtfsError(f"{zf.filename}: shapes.txt line {i}: {err}") from None
        ids.append(row["shape_id"])
    id_arr = np.asarray(ids, dtype=object)
    order = np.lexsort((np.asarray(seq, np.int64), id_arr.astype(str)))
    id_sorted = id_arr[order]
    la = np.asarray(lat, np.float64)[order]
    lo = np.asarray(lon, np.float64)[order]
    shapes: dict[str, Shape] = {}
    if not len(order):
        return shapes
    cuts = np.flatnonzero(id_sorted[1:] != id_sorted[:-1]) + 1
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
        sid = str(id_sorted[a])
        shapes[sid] = Shape(sid, la[a:b].copy(), lo[a:b].copy())
    return shapes


def _trip_times(zf: zipfile.ZipFile) -> dict[str, tuple[int, int]]:
    """First departure and last arrival per trip, by stop_sequence."""
    first: dict[str, tuple[int, int]] = {}  # trip -> (sequence, departure)
    last: dict[str, tuple[int, int]] = {}
    cols = ("trip_id", "arrival_time", "departure_time", "stop_sequence")
    for i, row in enumerate(_rows(zf, "stop_times.txt", cols), start=2):
        trip = row["trip_id"]
        arr, dep = row["arrival_time"].strip(), row["departure_time"].strip()
        if not arr and not dep:
            continue  # an untimed stop: GTFS lets times be interpolated
        try:
            s = int(row["stop_sequence"])
            a = parse_gtfs_time(arr or dep)
            d = parse_gtfs_time(dep or arr)
        except ValueError as err:
            raise GtfsError(f"{zf.filename}: stop_times.txt line {i}: {err}") from None
        f = first.get(trip)
        if f is None or s < f[0]:
            first[trip] = (s, d)
        g = last.get(trip)
        if g is None or s > g[0]:
            last[trip] = (s, a)
    return {t: (first[t][1], last[t][1]) for t in first}


def load_gtfs(path: str | Path, *, stop_times: bool = True) -> GtfsFeed:
    """Read a GTFS zip. `stop_times=False` skips the largest file when only shapes
    are needed (trips then have no start or end time)."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise GtfsError(f"{path}: cannot open the GTFS zip: {err}") from None
    with zf:
        shapes = load_shapes(zf)
        times = _trip_times(zf) if stop_times else {}
        trips: dict[str, Trip] = {}
        cols = ("route_id", "service_id", "trip_id")
        for row in _rows(zf, "trips.txt", cols):
            tid = row["trip_id"]
            start, end = times.get(tid, (-1, -1))
            direction = row.get("direction_id", "").strip()
            trips[tid] = Trip(
                tid,
                row["route_id"],
                row["service_id"],
                row.get("shape_id", "") or "",
                int(direction) if direction.isdigit() else 0,
                start,
                end,
            )
        services: dict[str, Service] = {}
        exceptions: dict[tuple[str, dt.date], bool] = {}
        days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        if "calendar.txt" in zf.namelist():
            for row in _rows(zf, "calendar.txt", ("service_id", *days, "start_date", "end_date")):
                sid = row["service_id"]
                services[sid] = Service(
                    sid,
                    tuple(row[d].strip() == "1" for d in days),
                    _date(row["start_date"], "calendar.txt"),
                    _date(row["end_date"], "calendar.txt"),
                )
        if "calendar_dates.txt" in zf.namelist():
            cols = ("service_id", "date", "exception_type")
            for row in _rows(zf, "calendar_dates.txt", cols):
                day = _date(row["date"], "calendar_dates.txt")
                exceptions[(row["service_id"], day)] = row["exception_type"].strip() == "1"
    return GtfsFeed(shapes, trips, services, exceptions)
