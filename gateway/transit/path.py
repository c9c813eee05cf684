"""The line a trip runs along, in metres, with each of its stops placed on it.

The line is the trip's shape when the feed has shapes, otherwise the straight legs
between its stops. Stops are placed in order, each at or after the one before, so a
loop that ends where it starts, or a stop visited twice, gets two distinct places.
A fix is located within a window of the line around where the vehicle was, which
keeps a loop's start from being taken for its end.

    TripSchedule --PathBook.path--> TripPath(line, stop_m)
                                      └─ locate(lat, lon, lo_m, hi_m, near_m) --> (off_m, along_m)
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from gateway.analytics.geo import LocalProjection, Polyline
from gateway.transit.feed import TransitFeed, TripSchedule

_NEAR_WEIGHT = 0.05  # metres of cost per metre away from the expected place: breaks loop ties


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class TripPath:
    line: Polyline
    stop_m: NDArray[np.float64]  # metres along the line of each stop time, non-decreasing

    @property
    def length_m(self) -> float:
        return float(self.stop_m[-1])

    def locate(
        self, lat: float, lon: float, lo_m: float, hi_m: float, near_m: float
    ) -> tuple[float, float]:
        """Distance from the fix to the line, and its place along it, searching only
        [lo_m, hi_m] and preferring places near `near_m`."""
        line = self.line
        px, py = line.projection.to_xy(lat, lon)
        seg = np.flatnonzero((line.cum[1:] >= lo_m) & (line.cum[:-1] <= hi_m))
        if not len(seg):
            seg = np.asarray([len(line.cum) - 2])
        ax, ay = line.x[seg], line.y[seg]
        dx, dy = line.x[seg + 1] - ax, line.y[seg + 1] - ay
        seg_len = np.hypot(dx, dy)
        safe = np.where(seg_len > 0, seg_len * seg_len, 1.0)
        t = np.clip(((float(px) - ax) * dx + (float(py) - ay) * dy) / safe, 0.0, 1.0)
        along = np.clip(line.cum[seg] + t * seg_len, lo_m, hi_m)
        frac = np.where(seg_len > 0, (along - line.cum[seg]) / np.where(seg_len > 0, seg_len, 1), 0)
        off = np.hypot(ax + frac * dx - float(px), ay + frac * dy - float(py))
        best = int(np.argmin(off + _NEAR_WEIGHT * np.abs(along - near_m)))
        return float(off[best]), float(along[best])

    def scheduled_s(self, trip: TripSchedule, along_m: float) -> float:
        """The timetable's time (s of the service day) at a place along the trip."""
        return float(np.interp(along_m, self.stop_m, trip.arrival_s.astype(np.float64)))

    def place_at(self, trip: TripSchedule, second: float) -> float:
        """Where the timetable has the vehicle at a second of the service day."""
        return float(np.interp(second, trip.arrival_s.astype(np.float64), self.stop_m))


class PathBook:
    """Builds each distinct (shape, stop list) path once and shares it among trips."""

    def __init__(self, feed: TransitFeed) -> None:
        self.feed = feed
        self._paths: dict[tuple[str, tuple[str, ...]], TripPath] = {}
        stops = feed.stops.values()
        lat = [s.lat for s in stops] or [0.0]
        lon = [s.lon for s in stops] or [0.0]
        self.projection = LocalProjection.around(lat, lon)

    def path(self, trip: TripSchedule) -> TripPath:
        key = (trip.shape_id if trip.shape_id in self.feed.shapes else "", trip.stop_ids)
        found = self._paths.get(key)
        if found is None:
            found = self._build(*key)
            self._paths[key] = found
        return found

    def _build(self, shape_id: str, stop_ids: tuple[str, ...]) -> TripPath:
        stops = [self.feed.stops[s] for s in stop_ids]
        lat = np.asarray([s.lat for s in stops])
        lon = np.asarray([s.lon for s in stops])
        if not shape_id:
            # without a shape the line is the stop sequence itself; a repeated
            # point is a zero-length leg, which Polyline allows
            line = Polyline.from_latlon(lat, lon, self.projection)
            return TripPath(line, line.cum.copy())
        shape = self.feed.shapes[shape_id]
        line = Polyline.from_latlon(shape.lat, shape.lon, self.projection)
        path = TripPath(line, np.zeros(len(stops)))
        placed = np.zeros(len(stops))
        lo = 0.0
        for i in range(len(stops)):
            _, along = path.locate(float(lat[i]), float(lon[i]), lo, line.length_m, lo)
            placed[i] = along
            lo = along
        return TripPath(line, placed)
