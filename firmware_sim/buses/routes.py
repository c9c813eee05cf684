"""Bus routes for the simulator: PMPML (Pune) stop chains or Cairns GTFS shapes.

PMPML's published data has stops and route variants ("Swargate to Narayanpur
(DOWN)") but no stop sequences or shapes. A PMPML route here runs from its origin
stop to its destination stop through the real stops in a corridor between them,
ordered along the way; the stop names and positions are real, the path between
them is straight lines. Cairns' GTFS has real shapes, for route deviation tests.

Both ship with the package, under data/ (see data/README.md), cut from the full
sets by scripts/slice_data.py: the simulator needs nothing beside the repository.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

EARTH_M = 6_371_000.0
DATA = Path(__file__).resolve().parent / "data"


class RouteDataMissing(FileNotFoundError):
    pass


def need(path: Path | str) -> Path:
    """`path` as a Path, or RouteDataMissing naming it when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise RouteDataMissing(f"{path} is missing: give the path of an existing file")
    return path


def _csv(path: Path) -> list[dict[str, str]]:
    with need(path).open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Route:
    id: str
    name: str
    lat: NDArray[np.float64]  # vertices of the path
    lon: NDArray[np.float64]
    stops: tuple[str, ...]  # names of the stops at the vertices ("" between stops)
    cum_m: NDArray[np.float64]  # distance along the path at each vertex

    @property
    def length_m(self) -> float:
        return float(self.cum_m[-1])

    def at(self, s: float) -> tuple[float, float, float]:
        """(lat, lon, heading) at distance `s` along the path."""
        s = min(max(s, 0.0), self.length_m)
        i = int(np.searchsorted(self.cum_m, s, side="right")) - 1
        i = min(max(i, 0), len(self.cum_m) - 2)
        seg = self.cum_m[i + 1] - self.cum_m[i]
        f = 0.0 if seg <= 0 else (s - self.cum_m[i]) / seg
        lat = self.lat[i] + f * (self.lat[i + 1] - self.lat[i])
        lon = self.lon[i] + f * (self.lon[i + 1] - self.lon[i])
        return (
            float(lat),
            float(lon),
            bearing(self.lat[i], self.lon[i], self.lat[i + 1], self.lon[i + 1]),
        )

    def stop_distances(self) -> NDArray[np.float64]:
        return self.cum_m[[i for i, name in enumerate(self.stops) if name]]


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    y = math.sin(math.radians(lon2 - lon1)) * math.cos(math.radians(lat2))
    x = math.cos(math.radians(lat1)) * math.sin(math.radians(lat2)) - math.sin(
        math.radians(lat1)
    ) * math.cos(math.radians(lat2)) * math.cos(math.radians(lon2 - lon1))
    return (math.degrees(math.atan2(y, x)) + 360.0) % 360.0


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    dlat = math.degrees(north_m / EARTH_M)
    dlon = math.degrees(east_m / (EARTH_M * math.cos(math.radians(lat))))
    return lat + dlat, lon + dlon


def _cumulative(lat: NDArray[np.float64], lon: NDArray[np.float64]) -> NDArray[np.float64]:
    la, lo = np.radians(lat), np.radians(lon)
    dy = np.diff(la) * EARTH_M
    dx = np.diff(lo) * EARTH_M * np.cos((la[1:] + la[:-1]) / 2)
    return np.concatenate([[0.0], np.cumsum(np.hypot(dx, dy))])


class PmpmlRoutes:
    """PMPML route variants as stop chains (see the module docstring), read from
    `folder` (stops.txt, routes.txt, route_stops.txt; default: the shipped data)."""

    def __init__(self, folder: Path | None = None) -> None:
        folder = folder or DATA / "pmpml"
        stops = {s["stop_id"]: s for s in _csv(folder / "stops.txt")}
        chains: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for row in _csv(folder / "route_stops.txt"):
            chains[row["route_id"]].append((int(row["stop_sequence"]), row["stop_id"]))
        self.routes: list[Route] = []
        for row in _csv(folder / "routes.txt"):
            chain = [stops[stop_id] for _, stop_id in sorted(chains[row["route_id"]])]
            if len(chain) < 2:
                raise RouteDataMissing(
                    f"{folder / 'route_stops.txt'}: route {row['route_id']} has "
                    f"{len(chain)} stops; it needs two or more (re-cut it with "
                    "scripts/slice_data.py)"
                )
            lat = np.array([float(s["stop_lat"]) for s in chain])
            lon = np.array([float(s["stop_lon"]) for s in chain])
            name = f"{row['route_short_name']} {row['route_long_name']}"
            names = tuple(s["stop_name"] for s in chain)
            self.routes.append(Route(row["route_id"], name, lat, lon, names, _cumulative(lat, lon)))

    def __len__(self) -> int:
        return len(self.routes)

    def route(self, index: int) -> Route:
        return self.routes[index]


class CairnsRoutes:
    """Cairns GTFS routes with their real shapes (one shape per route)."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or DATA / "cairns" / "cairns_routes.zip"
        with zipfile.ZipFile(need(path)) as zf:

            def rows(name: str) -> list[dict[str, str]]:
                with zf.open(name) as fh:
                    return list(csv.DictReader(io.TextIOWrapper(fh, "utf-8-sig")))

            routes = {r["route_id"]: r for r in rows("routes.txt")}
            shape_of: dict[str, str] = {}
            for trip in rows("trips.txt"):
                shape_of.setdefault(trip["route_id"], trip["shape_id"])
            points: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
            wanted = set(shape_of.values())
            for p in rows("shapes.txt"):
                if p["shape_id"] in wanted:
                    points[p["shape_id"]].append(
                        (
                            int(p["shape_pt_sequence"]),
                            float(p["shape_pt_lat"]),
                            float(p["shape_pt_lon"]),
                        )
                    )
        self.routes: list[Route] = []
        for route_id, shape_id in sorted(shape_of.items()):
            pts = sorted(points[shape_id])
            if len(pts) < 2:
                continue
            lat = np.array([p[1] for p in pts])
            lon = np.array([p[2] for p in pts])
            cum = _cumulative(lat, lon)
            # a stop every ~400 m along the shape: Cairns' stop_times are not needed for motion
            stops = tuple(
                f"km {c / 1000:.1f}" if i == 0 or int(c // 400) != int(cum[i - 1] // 400) else ""
                for i, c in enumerate(cum)
            )
            r = routes[route_id]
            name = f"{r.get('route_short_name', '')} {r.get('route_long_name', '')}".strip()
            self.routes.append(Route(route_id, name, lat, lon, stops, cum))

    def __len__(self) -> int:
        return len(self.routes)

    def route(self, index: int) -> Route:
        return self.routes[index]
