"""Geometry: haversine against known distances, polyline distance and position, polygons."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.analytics.geo import LocalProjection, Polyline, haversine_m, points_in_polygon


def test_haversine_known_distances() -> None:
    # one degree of latitude is 111.195 km on the mean-radius sphere
    assert haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(111_195, abs=1)
    # Pune Shivajinagar to Swargate, about 4.3 km
    d = haversine_m(18.5308, 73.8475, 18.5018, 73.8636)
    assert 3_500 < float(d) < 3_800
    out = haversine_m(np.array([0.0, 10.0]), np.array([0.0, 10.0]), 0.0, 0.0)
    assert out.shape == (2,) and out[0] == 0.0


def test_projection_round_trip_and_scale() -> None:
    proj = LocalProjection(18.52, 73.85)
    x, y = proj.to_xy([18.53, 18.52], [73.85, 73.86])
    assert y[0] == pytest.approx(1_111.95, rel=1e-4)
    assert x[1] == pytest.approx(float(haversine_m(18.52, 73.85, 18.52, 73.86)), rel=1e-3)
    lat, lon = proj.to_latlon(x, y)
    np.testing.assert_allclose(lat, [18.53, 18.52], atol=1e-12)
    np.testing.assert_allclose(lon, [73.85, 73.86], atol=1e-12)
    with pytest.raises(ValueError, match="not a valid"):
        LocalProjection(95.0, 0.0)


def test_polyline_locate_distance_and_along() -> None:
    # an L: 1 km east, then 1 km north, around (18.5, 73.8)
    proj = LocalProjection(18.5, 73.8)
    lat, lon = proj.to_latlon([0.0, 1000.0, 1000.0], [0.0, 0.0, 1000.0])
    line = Polyline.from_latlon(lat, lon, proj)
    assert line.length_m == pytest.approx(2000.0)
    plat, plon = proj.to_latlon([500.0, 1200.0, -300.0, np.nan], [100.0, 600.0, 0.0, 0.0])
    dist, along = line.locate(plat, plon)
    np.testing.assert_allclose(dist[:3], [100.0, 200.0, 300.0], atol=1e-6)
    np.testing.assert_allclose(along[:3], [500.0, 1600.0, 0.0], atol=1e-6)
    assert np.isnan(dist[3]) and np.isnan(along[3])
    back_lat, back_lon = line.point_at([1500.0])
    d, a = line.locate(back_lat, back_lon)
    assert d[0] == pytest.approx(0.0, abs=1e-6) and a[0] == pytest.approx(1500.0)


def test_polyline_chunks_agree_with_brute_force() -> None:
    rng = np.random.default_rng(7)
    proj = LocalProjection(-16.9, 145.75)
    vx = np.cumsum(rng.uniform(-50, 150, 400))
    vy = np.cumsum(rng.uniform(-50, 150, 400))
    lat, lon = proj.to_latlon(vx, vy)
    line = Polyline.from_latlon(lat, lon, proj)
    px, py = rng.uniform(vx.min(), vx.max(), 2000), rng.uniform(vy.min(), vy.max(), 2000)
    plat, plon = proj.to_latlon(px, py)
    dist, _ = line.locate(plat, plon)
    # brute force on a dense resampling of the line: never closer than the exact answer
    s = np.linspace(0, line.length_m, 200_000)
    sx, sy = np.interp(s, line.cum, line.x), np.interp(s, line.cum, line.y)
    for i in range(0, 2000, 97):
        brute = np.min(np.hypot(sx - px[i], sy - py[i]))
        assert dist[i] <= brute + 1e-6
        assert brute - dist[i] < 1.0


def test_polyline_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least two"):
        Polyline.from_latlon([1.0], [2.0])
    with pytest.raises(ValueError, match="finite"):
        Polyline.from_latlon([1.0, np.nan], [2.0, 2.0])


def test_points_in_polygon() -> None:
    ring_lat = [18.50, 18.50, 18.52, 18.52]
    ring_lon = [73.80, 73.82, 73.82, 73.80]
    inside = points_in_polygon(
        [18.51, 18.53, 18.51, np.nan], [73.81, 73.81, 73.83, 73.81], ring_lat, ring_lon
    )
    assert inside.tolist() == [True, False, False, False]
    # concave: a U shape, the notch is outside
    u_lat = [0.0, 0.0, 3.0, 3.0, 1.0, 1.0, 3.0, 3.0]
    u_lon = [0.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 0.0]
    got = points_in_polygon([2.0, 0.5, 2.0], [1.5, 1.5, 0.5], u_lat, u_lon)
    assert got.tolist() == [False, True, True]
    with pytest.raises(ValueError, match="three vertices"):
        points_in_polygon([0.0], [0.0], [0.0, 1.0], [0.0, 1.0])
