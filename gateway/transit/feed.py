"""A static GTFS feed as arrival prediction needs it: stops, routes, trips with their
stop times, the service calendar and, when present, shapes.

Read straight from the zip; a malformed feed is refused with a `FeedError` naming the
file, the row (its line in the file) and the field. Times are seconds of the service
day, so `25:10:00` is 90,600 s; a trip keeps its stop times in stop_sequence order,
and a stop may appear in a trip more than once (loops).

    gtfs.zip --load_feed--> TransitFeed(stops, routes, trips, calendar, shapes)
                               └─ trips_running(day) --> trip ids whose service runs
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from gateway.analytics.geo import haversine_m
from gateway.analytics.gtfs import GtfsError, Service, Shape, load_shapes, parse_gtfs_time

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class FeedError(GtfsError):
    """A feed that cannot be used; the message names the file, row and field."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    stop_id: str
    name: str
    lat: float
    lon: float


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    route_id: str
    short_name: str
    long_name: str


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class TripSchedule:
    """One trip and its stop times, in stop_sequence order."""

    trip_id: str
    route_id: str
    service_id: str
    headsign: str
    direction_id: int
    shape_id: str  # "" without shapes
    block_id: str
    stop_ids: tuple[str, ...]
    sequence: NDArray[np.int32]  # stop_sequence of each stop time
    arrival_s: NDArray[np.int64]  # seconds of the service day; may exceed 86,400
    departure_s: NDArray[np.int64]

    @property
    def start_s(self) -> int:
        return int(self.departure_s[0])

    @property
    def end_s(self) -> int:
        return int(self.arrival_s[-1])


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class TransitFeed:
    timezone: ZoneInfo
    stops: dict[str, Stop]
    routes: dict[str, Route]
    trips: dict[str, TripSchedule]
    services: dict[str, Service]
    exceptions: dict[tuple[str, dt.date], bool]  # calendar_dates: True added, False removed
    shapes: dict[str, Shape]

    def services_on(self, day: dt.date) -> set[str]:
        """Service ids running on `day`, from calendar.txt and calendar_dates.txt."""
        out = {
            s.service_id
            for s in self.services.values()
            if s.start <= day <= s.end and s.weekdays[day.weekday()]
        }
        for (sid, d), added in self.exceptions.items():
            if d == day:
                (out.add if added else out.discard)(sid)
        return out

    def service_midnight(self, day: dt.date) -> dt.datetime:
        """The instant a service day's times count from: noon minus 12 h, local time."""
        noon = dt.datetime.combine(day, dt.time(12), self.timezone)
        return noon - dt.timedelta(hours=12)


class _Reader:
    """Rows of one file in the zip, each with its line number, and field parsers that
    name the file, row and field on a bad value."""

    def __init__(self, zf: zipfile.ZipFile, name: str, needed: tuple[str, ...]) -> None:
        self.where = f"{zf.filename}: {name}"
        self.zf = zf
        self.name = name
        self.needed = needed
        self.line = 1

    def rows(self) -> Iterator[dict[str, str]]:
        try:
            raw = self.zf.open(self.name)
        except KeyError:
            raise FeedError(f"{self.where} is missing from the feed") from None
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.DictReader(text)
            missing = [c for c in self.needed if c not in (reader.fieldnames or ())]
            if missing:
                raise FeedError(f"{self.where} lacks column(s) {', '.join(missing)}")
            for self.line, row in enumerate(reader, start=2):
                for field in self.needed:
                    if not (row.get(field) or "").strip():
                        self.fail(field, "is empty")
                yield row

    def fail(self, field: str, problem: str) -> None:
        raise FeedError(f"{self.where} row {self.line}, field {field}: {problem}")

    def number(self, row: dict[str, str], field: str, lo: float, hi: float) -> float:
        text = row[field].strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not lo <= value <= hi:
            self.fail(field, f"{text!r} is not a number in [{lo:g}, {hi:g}]")
        return value

    def integer(self, row: dict[str, str], field: str) -> int:
        text = row[field].strip()
        if not text.isdigit():
            self.fail(field, f"{text!r} is not a non-negative integer")
        return int(text)

    def time(self, row: dict[str, str], field: str) -> int:
        try:
            return parse_gtfs_time(row[field])
        except ValueError as err:
            self.fail(field, str(err))
            raise  # unreachable: fail raises

    def date(self, row: dict[str, str], field: str) -> dt.date:
        try:
            return dt.datetime.strptime(row[field].strip(), "%Y%m%d").date()
        except ValueError:
            self.fail(field, f"{row[field]!r} is not a YYYYMMDD date")
            raise


def _timezone(zf: zipfile.ZipFile) -> ZoneInfo:
    r = _Reader(zf, "agency.txt", ("agency_timezone",))
    for row in r.rows():
        try:
            return ZoneInfo(row["agency_timezone"].strip())
        except (ZoneInfoNotFoundError, ValueError):
            r.fail("agency_timezone", f"{row['agency_timezone']!r} is not an IANA time zone")
    raise FeedError(f"{r.where} has no agency")


def _stops(zf: zipfile.ZipFile) -> dict[str, Stop]:
    r = _Reader(zf, "stops.txt", ("stop_id",))
    out: dict[str, Stop] = {}
    for row in r.rows():
        if row.get("location_type", "").strip() not in ("", "0"):
            continue  # stations and entrances: no vehicle arrives at them
        for field in ("stop_lat", "stop_lon"):
            if not (row.get(field) or "").strip():
                r.fail(field, "is empty for a stop")
        lat = r.number(row, "stop_lat", -90, 90)
        lon = r.number(row, "stop_lon", -180, 180)
        sid = row["stop_id"].strip()
        out[sid] = Stop(sid, (row.get("stop_name") or "").strip(), lat, lon)
    return out


def _routes(zf: zipfile.ZipFile) -> dict[str, Route]:
    r = _Reader(zf, "routes.txt", ("route_id",))
    out: dict[str, Route] = {}
    for row in r.rows():
        rid = row["route_id"].strip()
        short = (row.get("route_short_name") or "").strip()
        out[rid] = Route(rid, short, (row.get("route_long_name") or "").strip())
    return out


_UNTIMED = -1  # a stop time with no times: interpolated between its timed neighbours
_StopTimes = dict[str, list[tuple[int, str, int, int]]]  # trip -> (sequence, stop, arr, dep)


def _stop_times(zf: zipfile.ZipFile, stops: dict[str, Stop]) -> _StopTimes:
    r = _Reader(zf, "stop_times.txt", ("trip_id", "stop_id", "stop_sequence"))
    out: _StopTimes = {}
    for row in r.rows():
        stop = row["stop_id"].strip()
        if stop not in stops:
            r.fail("stop_id", f"{stop!r} is not a stop in stops.txt")
        arr_text = (row.get("arrival_time") or "").strip()
        dep_text = (row.get("departure_time") or "").strip()
        if arr_text or dep_text:
            arr = r.time(row, "arrival_time" if arr_text else "departure_time")
            dep = r.time(row, "departure_time") if dep_text else arr
            if dep < arr:
                r.fail("departure_time", "is before arrival_time")
        else:
            arr = dep = _UNTIMED
        seq = r.integer(row, "stop_sequence")
        out.setdefault(row["trip_id"].strip(), []).append((seq, stop, arr, dep))
    return out


def _interpolated(
    times: NDArray[np.int64], rows: list[tuple[int, str, int, int]], stops: dict[str, Stop]
) -> NDArray[np.int64]:
    """Untimed stop times filled in by straight-line distance between timed ones."""
    untimed = times == _UNTIMED
    if not untimed.any():
        return times
    lat = np.asarray([stops[t[1]].lat for t in rows])
    lon = np.asarray([stops[t[1]].lon for t in rows])
    along = np.concatenate([[0.0], np.cumsum(haversine_m(lat[:-1], lon[:-1], lat[1:], lon[1:]))])
    along += np.arange(len(rows)) * 1e-3  # stops at one place keep their order
    out = times.copy()
    out[untimed] = np.round(np.interp(along[untimed], along[~untimed], times[~untimed]))
    return out


def _trips(
    zf: zipfile.ZipFile, times: _StopTimes, routes: dict[str, Route], stops: dict[str, Stop]
) -> dict[str, TripSchedule]:
    r = _Reader(zf, "trips.txt", ("route_id", "service_id", "trip_id"))
    out: dict[str, TripSchedule] = {}
    for row in r.rows():
        tid, rid = row["trip_id"].strip(), row["route_id"].strip()
        if rid not in routes:
            r.fail("route_id", f"{rid!r} is not a route in routes.txt")
        rows = sorted(times.get(tid, ()))
        if len(rows) < 2:
            continue  # a trip with fewer than two stops has nothing to predict
        if rows[0][2] == _UNTIMED or rows[-1][2] == _UNTIMED:
            r.fail("trip_id", f"trip {tid!r} has no time at its first or last stop")
        arr = _interpolated(np.asarray([t[2] for t in rows], np.int64), rows, stops)
        dep = _interpolated(np.asarray([t[3] for t in rows], np.int64), rows, stops)
        if np.any(np.diff(arr) < 0):
            r.fail("trip_id", f"stop times of trip {tid!r} go back in time")
        direction = (row.get("direction_id") or "").strip()
        out[tid] = TripSchedule(
            trip_id=tid,
            route_id=rid,
            service_id=row["service_id"].strip(),
            headsign=(row.get("trip_headsign") or "").strip(),
            direction_id=int(direction) if direction.isdigit() else 0,
            shape_id=(row.get("shape_id") or "").strip(),
            block_id=(row.get("block_id") or "").strip(),
            stop_ids=tuple(t[1] for t in rows),
            sequence=np.asarray([t[0] for t in rows], np.int32),
            arrival_s=arr,
            departure_s=dep,
        )
    return out


def _calendar(zf: zipfile.ZipFile) -> dict[str, Service]:
    out: dict[str, Service] = {}
    if "calendar.txt" not in zf.namelist():
        return out
    r = _Reader(zf, "calendar.txt", ("service_id", *_DAYS, "start_date", "end_date"))
    for row in r.rows():
        for day in _DAYS:
            if row[day].strip() not in ("0", "1"):
                r.fail(day, f"{row[day]!r} is not 0 or 1")
        sid = row["service_id"].strip()
        flags = tuple(row[d].strip() == "1" for d in _DAYS)
        out[sid] = Service(sid, flags, r.date(row, "start_date"), r.date(row, "end_date"))
    return out


def _calendar_dates(zf: zipfile.ZipFile) -> dict[tuple[str, dt.date], bool]:
    out: dict[tuple[str, dt.date], bool] = {}
    if "calendar_dates.txt" not in zf.namelist():
        return out
    r = _Reader(zf, "calendar_dates.txt", ("service_id", "date", "exception_type"))
    for row in r.rows():
        kind = row["exception_type"].strip()
        if kind not in ("1", "2"):
            r.fail("exception_type", f"{kind!r} is not 1 (added) or 2 (removed)")
        out[(row["service_id"].strip(), r.date(row, "date"))] = kind == "1"
    return out


def load_feed(path: str | Path) -> TransitFeed:
    """Read and check a GTFS zip; FeedError names what is wrong and where."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise FeedError(f"{path}: cannot open the GTFS zip: {err}") from None
    with zf:
        stops = _stops(zf)
        routes = _routes(zf)
        trips = _trips(zf, _stop_times(zf, stops), routes, stops)
        services = _calendar(zf)
        exceptions = _calendar_dates(zf)
        if not services and not exceptions:
            raise FeedError(f"{path}: the feed has neither calendar.txt nor calendar_dates.txt")
        shapes = load_shapes(zf) if "shapes.txt" in zf.namelist() else {}
        return TransitFeed(_timezone(zf), stops, routes, trips, services, exceptions, shapes)
