"""Static GTFS for prediction, on the committed CapMetro and Cairns slices."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pytest

from gateway.transit.feed import FeedError, load_feed

DATA = Path(__file__).resolve().parents[1] / "data"
CAPMETRO = DATA / "avl" / "capmetro_gtfs_2016-12-16.zip"
CAIRNS = DATA / "gtfs" / "cairns_gtfs.zip"


def test_capmetro_times_past_midnight_loops_and_repeated_stops() -> None:
    feed = load_feed(CAPMETRO)
    assert str(feed.timezone) == "America/Chicago"
    late = feed.trips["1676731"]
    assert late.end_s > 24 * 3600  # runs past 24:00
    loop = feed.trips["1671887"]
    assert loop.stop_ids[0] == loop.stop_ids[-1]
    assert len(set(loop.stop_ids)) < len(loop.stop_ids)
    assert list(loop.sequence) == sorted(loop.sequence)
    assert not feed.shapes
    assert "svc_20161216" in feed.services_on(dt.date(2016, 12, 16))
    assert "svc_20161216" not in feed.services_on(dt.date(2016, 12, 17))


def test_cairns_shapes_and_untimed_stops_interpolated() -> None:
    feed = load_feed(CAIRNS)
    assert feed.shapes
    assert all(t.shape_id in feed.shapes for t in feed.trips.values())
    for trip in feed.trips.values():
        assert (trip.arrival_s[1:] >= trip.arrival_s[:-1]).all()
        assert (trip.departure_s >= trip.arrival_s).all()


def _rewrite(tmp_path: Path, name: str, edit: str, replace: str) -> Path:
    out = tmp_path / "bad.zip"
    with zipfile.ZipFile(CAPMETRO) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            data = src.read(item).decode()
            if item == name:
                assert edit in data
                data = data.replace(edit, replace, 1)
            dst.writestr(item, data)
    return out


def test_bad_time_names_file_row_and_field(tmp_path: Path) -> None:
    text = zipfile.ZipFile(CAPMETRO).read("stop_times.txt").decode()
    second = text.splitlines()[1]  # row 2
    bad = second.replace(second.split(",")[1], "25:61:00", 1)
    path = _rewrite(tmp_path, "stop_times.txt", second, bad)
    with pytest.raises(FeedError, match=r"stop_times\.txt row 2, field arrival_time: .*25:61:00"):
        load_feed(path)


def test_unknown_stop_and_bad_latitude_are_refused(tmp_path: Path) -> None:
    text = zipfile.ZipFile(CAPMETRO).read("stops.txt").decode()
    row = text.splitlines()[3]
    fields = row.split(",")
    fields[-2] = "north"
    path = _rewrite(tmp_path, "stops.txt", row, ",".join(fields))
    with pytest.raises(FeedError, match=r"stops\.txt row 4, field stop_lat: 'north'"):
        load_feed(path)


def test_missing_file_and_not_a_zip(tmp_path: Path) -> None:
    out = tmp_path / "nostops.zip"
    with zipfile.ZipFile(CAPMETRO) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            if item != "stops.txt":
                dst.writestr(item, src.read(item))
    with pytest.raises(FeedError, match=r"stops\.txt is missing"):
        load_feed(out)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(io.BytesIO(b"not a zip").getvalue())
    with pytest.raises(FeedError, match="cannot open"):
        load_feed(junk)
