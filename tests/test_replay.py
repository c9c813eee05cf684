"""`gateway replay`, the offline contract: CSV in, alerts JSONL, scores CSV and a plot out."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gateway import replay as replay_mod
from gateway.analytics.anomaly import AnomalyDetector
from gateway.readings_csv import ReplayError, parse_readings
from gateway.replay import register, replay

NS = 1_000_000_000
T0 = 1_767_205_800  # 2026-01-01 00:00 Asia/Kolkata
FLOW, P_IN, P_1 = "dma-01/inlet/flow_lps", "dma-01/inlet/pressure_m", "dma-01/pz-1/pressure_m"
CONFIG = f"""
[[dma]]
name = "dma-01"
inflow = ["{FLOW}"]
pressure = ["{P_IN}", "{P_1}"]

[water]
timezone = "Asia/Kolkata"
"""
NAB = Path(__file__).resolve().parent / "data" / "nab" / "machine_temperature_system_failure.csv"


def write_dma_csv(path: Path, days: float, *, burst_at_day: float | None = None, seed: int = 0,
                  iso: bool = False) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, int(days * 86_400), 60)
    h = ((ts - T0) % 86_400) / 3600.0
    pattern = 0.35 + 1.1 * np.exp(-((h - 7.5) ** 2) / 3) + 0.7 * np.exp(-((h - 19.5) ** 2) / 5)
    q = 10 * pattern / pattern.mean() * (1 + 0.02 * rng.standard_normal(len(ts)))
    if burst_at_day is not None:
        q += np.where(ts >= T0 + burst_at_day * 86_400, 4.0, 0.0)
    p_in = 45 - 0.02 * q**1.5 + 0.03 * rng.standard_normal(len(ts))
    p_1 = p_in - 0.004 * q**1.85 + 0.03 * rng.standard_normal(len(ts))
    with open(path, "w") as fh:
        fh.write("ts,stream,value\n")
        for k, t in enumerate(ts.tolist()):
            stamp = (
                np.datetime_as_string(np.datetime64(t + 19_800, "s")) + "+05:30" if iso else str(t)
            )
            a, b, c = float(q[k]), float(p_in[k]), float(p_1[k])
            fh.write(f"{stamp},{FLOW},{a!r}\n{stamp},{P_IN},{b!r}\n{stamp},{P_1},{c!r}\n")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "dma.toml"
    path.write_text(CONFIG)
    return path


def test_parse_iso_with_offset_epoch_and_quality(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "ts,stream,value,quality\n"
        "2026-01-01T05:30:00+05:30,dma-01/inlet/flow_lps,1.5,0\n"
        "2026-01-01T00:00:00.250Z,dma-01/inlet/flow_lps,nan,1\n"
        "1767225600.5,dma-01/inlet/pressure_m,-inf,\n"
        "2025-12-31 19:00:01-05:00,dma-01/inlet/pressure_m,42,0\n"
    )
    p = parse_readings(path)
    assert p.bad == []
    assert p.ts.tolist() == [1_767_225_600 * NS, 1_767_225_600 * NS + 250_000_000,
                             1_767_225_600 * NS + 500_000_000, 1_767_225_601 * NS]  # fmt: skip
    assert np.isnan(p.value[1]) and p.value[2] == -np.inf and p.quality.tolist() == [0, 1, 0, 0]
    assert [str(p.names[i]) for i in p.name_index] == [FLOW, FLOW, P_IN, P_IN]
    assert p.line.tolist() == [2, 3, 4, 5]


def test_bad_rows_are_reported_by_line_and_stop_the_run(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "ts,stream,value\n"
        f"1767225600,{FLOW},1.0\n"
        f"1767225660,{FLOW},1.1\n"
        f"yesterday,{FLOW},1.2\n"
        f"1767225720,{FLOW},one\n"
        f"1767225780,not a stream,1.0\n"
        f"1767225840,{FLOW}\n"
        f"1767225900,{FLOW},1.3\n"
    )
    p = parse_readings(path)
    assert [line for line, _ in p.bad] == [4, 5, 6, 7]
    assert "bad ts 'yesterday'" in p.bad[0][1] and "expected 3 columns" in p.bad[3][1]
    result = replay(path, config, progress=False)
    assert result.rows == 2 and result.stopped_at_line == 4
    skipped = replay(path, config, skip_bad=True, progress=False)
    assert skipped.rows == 3 and skipped.bad_rows == 4 and skipped.stopped_at_line is None
    args = cli("--readings", str(path), "--config", str(config))
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "line 4: bad ts 'yesterday'" in err and "--skip-bad" in err
    args = cli("--readings", str(path), "--config", str(config), "--skip-bad")
    assert args.func(args) == 0
    assert "4 bad rows skipped" in capsys.readouterr().out


def test_bad_header_and_missing_file(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("time,name,value\n")
    with pytest.raises(ReplayError, match="line 1: header"):
        replay(path, config)
    with pytest.raises(ReplayError, match="cannot read"):
        replay(tmp_path / "missing.csv", config)


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gateway")
    register(parser.add_subparsers())
    return parser.parse_args(["replay", *argv])


def test_alerts_and_scores_out_whatever_the_batch_size(tmp_path: Path, config: Path) -> None:
    readings = tmp_path / "r.csv"
    write_dma_csv(readings, 9, burst_at_day=8.45, iso=True)
    outs = []
    for rows in (997, 100_000):
        alerts, scores = tmp_path / f"a{rows}.jsonl", tmp_path / f"s{rows}.csv"
        result = replay(readings, config, alerts_out=alerts, scores_out=scores,
                        batch_rows=rows, progress=False)  # fmt: skip
        outs.append((alerts.read_text(), scores.read_text()))
    assert outs[0] == outs[1]
    lines = [json.loads(x) for x in outs[0][0].splitlines()]
    bursts = [a for a in lines if a["kind"] == "burst"]
    assert bursts and bursts[0]["detected_at"] == bursts[0]["opened_at"]
    assert {"kind", "asset", "detected_at", "started_at", "magnitude", "score", "evidence",
            "id", "state"} <= set(bursts[0])  # fmt: skip
    assert bursts[0]["asset"] == "dma-01" and bursts[0]["magnitude"] > 2
    assert result.rows == 9 * 1440 * 3
    # scores: one row per input row, in input order, ts/stream/value as read, full precision
    with open(readings) as fh:
        inp = list(csv.reader(fh))
    out = list(csv.reader(outs[0][1].splitlines()))
    assert out[0] == ["ts", "stream", "value", "score"]
    assert [r[:3] for r in out[1:]] == inp[1:]
    p = parse_readings(readings)
    expected = AnomalyDetector(3).score(p.ts, p.name_index.astype(np.int32), p.value)
    assert [float(r[3]) for r in out[1:]] == expected.tolist()
    assert all(repr(float(r[3])) == r[3] for r in out[1:])


def test_plot_and_progress_bar(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    readings = tmp_path / "r.csv"
    write_dma_csv(readings, 2)
    monkeypatch.setattr(replay_mod, "_PROGRESS_ROWS", 1000)
    args = cli("--readings", str(readings), "--config", str(config), "--plot",
               str(tmp_path / "p.png"), "--batch-rows", "2000", "--fast")  # fmt: skip
    assert args.func(args) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    assert "replay [" in err and "100.0%" in err


def test_speed_paces_the_replay_on_data_time(tmp_path: Path, config: Path) -> None:
    readings = tmp_path / "r.csv"
    write_dma_csv(readings, 0.02)  # 28 minutes of data
    now = [0.0]
    replay(readings, config, speed=60.0, batch_rows=10, progress=False,
           clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))  # fmt: skip
    # at 60x, each batch waits until its first reading's data time / 60 on the clock
    ts = parse_readings(readings).ts
    first, last = ts[0], ts[(len(ts) - 1) // 10 * 10]  # the data time of the last batch
    assert now[0] >= (int(last) - int(first)) / 1e9 / 60 > 20


def test_replay_on_a_nab_file(tmp_path: Path) -> None:
    readings = tmp_path / "nab.csv"
    with open(NAB) as src, open(readings, "w") as dst:  # its first 3,000 rows, committed
        rows = list(csv.reader(src))[1:3001]
        dst.write("ts,stream,value\n")
        for stamp, value in rows:
            dst.write(f"{stamp.replace(' ', 'T')}Z,nab/machine_temperature,{value}\n")
    config = tmp_path / "nab.toml"
    config.write_text("# no DMA: only the generic detector's scores\n")
    scores = tmp_path / "scores.csv"
    args = cli("--readings", str(readings), "--config", str(config), "--scores-out", str(scores))
    assert args.func(args) == 0
    out = list(csv.reader(scores.read_text().splitlines()))
    assert len(out) == 3001 and out[1][1] == "nab/machine_temperature"
    values = np.asarray([float(r[3]) for r in out[1:]])
    assert np.all((values >= 0) & (values <= 1))


def test_replay_on_a_wntr_scenario_finds_the_leak(tmp_path: Path) -> None:
    pytest.importorskip("wntr", reason="wntr is in the dev extra: pip install -e .[dev]")
    from bench.leak_scenarios import Scenario, write  # noqa: PLC0415

    truth = write(Scenario("t01", days=19, seed=4, leak_class=">15%"), tmp_path)
    result = replay(tmp_path / truth["csv"], tmp_path / truth["config"], progress=False)
    start = truth["leak"]["start"] * NS
    found = [a for a in result.alerts if a.kind in ("leak", "burst") and a.opened_at >= start]
    assert found, f"no alert for {truth['leak']}"
    assert found[0].opened_at - start < 24 * 3600 * NS


def test_config_sections_parse_with_errors_naming_the_key(tmp_path: Path) -> None:
    from gateway.config import ConfigError  # noqa: PLC0415
    from gateway.replay import load_water_config  # noqa: PLC0415

    path = tmp_path / "g.toml"
    path.write_text(
        CONFIG
        + 'night_start = "01:30"\nweekend = ["sun"]\n'
        + "[water.alerts.kinds.leak]\nclear_after_s = 7200.0\n"
    )
    dmas, water = load_water_config(path)
    assert dmas[0].inflow == (FLOW,) and dmas[0].pressure == (P_IN, P_1)
    assert water.night_start == "01:30" and water.weekend == ("sun",)
    assert water.alerts.policy("leak").clear_after_s == 7200.0
    path.write_text(CONFIG + 'night_strat = "02:00"\n')
    with pytest.raises(
        ConfigError, match=r"water.night_strat: unknown key; did you mean 'night_start'"
    ):
        load_water_config(path)
    path.write_text(CONFIG.replace("Asia/Kolkata", "Mars/Olympus"))
    with pytest.raises(ConfigError, match="unknown timezone"):
        load_water_config(path)
    path.write_text('[[dma]]\nname = "dma-02"\n')
    with pytest.raises(ConfigError, match="at least one inflow"):
        load_water_config(path)
