"""Leak scenarios on WNTR (the EPA water network simulator): replay CSVs with known truth.

Each scenario is one DMA of 16 junctions on a grid, fed from a reservoir through
one metered inlet main, simulated by EPANET at 1-minute steps for `days` days:

    reservoir --inlet main (flow meter, inlet pressure)--> J00 ... J33 (pz-1 at the far corner)

Demand at every junction is a diurnal pattern (morning and evening peaks,
weekends later and higher) times a daily weather factor (sd 5 %), times
per-minute noise. On top, per scenario:

- a leak (or none) at a random junction: `abrupt` (a step) or `growing` (a
  linear ramp over 1-4 days to its full size), sized as a fraction of the mean
  inflow in one of the classes <2 %, 2-5 %, 5-15 %, >15 %, starting after
  `warmup_days` of learning;
- nuisances, drawn at random: hydrant flushing (15-40 % of mean inflow for
  20-60 min, daytime), a demand shift (new connections: +5-10 % of the pattern
  at a few junctions, from some day on), and a stuck sensor (the inflow or a
  pressure gauge repeating one value for 4-12 h).

Leaks are modelled as extra demand (pressure-independent) so that their size in
L/s is exact. Sensors add noise (flow 1 %, pressure 0.05 m) and 0.001 L/s /
0.01 m resolution. Output per scenario: `<name>.csv` (`ts,stream,value`, epoch
seconds), `<name>.toml` (the `[[dma]]`) and an entry in `truth.json`. With
`intervals` (minutes), the same readings are also written to `i<N>/<name>.csv`
the way a logger stores them every N minutes: flows as the mean of the N
minutes, pressures as the sample of the last minute, stamped at the end of the
interval (the minute of that sample).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import wntr

T0 = 1_767_225_600 - 19_800  # 2026-01-01 00:00 Asia/Kolkata, in epoch seconds
STEP_S = 60
GRID = 4
MEAN_INFLOW_LPS = 20.0
SIZE_CLASSES = {
    "<2%": (0.01, 0.02),
    "2-5%": (0.02, 0.05),
    "5-15%": (0.05, 0.15),
    ">15%": (0.15, 0.35),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    days: int
    seed: int
    leak_class: str | None  # a SIZE_CLASSES key, or None for no leak
    leak_kind: str = "abrupt"  # abrupt | growing
    warmup_days: int = 14

    @property
    def dma(self) -> str:
        return f"dma-{self.name}"


def _diurnal(hours: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Relative demand by local hour: low at night, morning and evening peaks."""
    shift = np.where(weekend, 1.5, 0.0)  # people rise later at weekends
    h = hours - shift
    base = 0.45 + 0.35 * np.sin((hours - 10.0) / 24.0 * 2 * np.pi).clip(-0.8, None)
    morning = 1.1 * np.exp(-((h - 7.0) ** 2) / (2 * 1.1**2))
    evening = 0.7 * np.exp(-((hours - 19.5) ** 2) / (2 * 1.6**2))
    night = np.where((hours >= 1) & (hours < 5), -0.15, 0.0)
    return np.clip(base + morning + evening + night, 0.2, None) * np.where(weekend, 1.05, 1.0)


def simulate(sc: Scenario) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run EPANET for one scenario; returns sensor series and the truth."""
    rng = np.random.default_rng(sc.seed)
    steps = sc.days * 1440
    ts = T0 + np.arange(steps) * STEP_S
    local_h = ((ts - T0) % 86_400) / 3600.0
    day = (ts - T0) // 86_400
    weekend = (day + 3) % 7 >= 5  # 2026-01-01 is a Thursday
    pattern = _diurnal(local_h, weekend)
    pattern /= pattern.mean()
    weather = 1.0 + 0.05 * rng.standard_normal(sc.days)
    common = pattern * weather[day]
    wn = wntr.network.WaterNetworkModel()
    wn.add_reservoir("R", base_head=float(rng.uniform(55.0, 65.0)))
    junctions = [f"J{i}{j}" for i in range(GRID) for j in range(GRID)]
    share = rng.dirichlet(np.full(len(junctions), 8.0))
    truth: dict[str, Any] = {"name": sc.name, "dma": sc.dma, "days": sc.days, "nuisances": []}
    demand = {}
    for k, name in enumerate(junctions):
        noise = 1.0 + 0.08 * rng.standard_normal(steps)
        demand[name] = MEAN_INFLOW_LPS / 1000 * share[k] * common * noise
    # nuisance: a demand shift (new connections) at a few junctions from some day on
    if rng.random() < 0.35:
        start_day = int(rng.integers(sc.warmup_days // 2, sc.days - 2))
        extra = float(rng.uniform(0.05, 0.10))
        for name in rng.choice(junctions, 3, replace=False):
            demand[str(name)] = demand[str(name)] * np.where(day >= start_day, 1 + extra * 5, 1.0)
        truth["nuisances"].append({"kind": "demand_shift", "from_day": start_day})
    # nuisance: hydrant flushing, daytime, 20-60 min
    for _ in range(int(rng.integers(0, 3))):
        d0 = int(rng.integers(3, sc.days - 1))
        start = d0 * 1440 + int(rng.integers(9 * 60, 16 * 60))
        length = int(rng.integers(20, 61))
        rate = MEAN_INFLOW_LPS / 1000 * float(rng.uniform(0.15, 0.40))
        name = str(rng.choice(junctions))
        demand[name] = demand[name].copy()
        demand[name][start : start + length] += rate
        truth["nuisances"].append(
            {"kind": "hydrant_flushing", "start": int(ts[start]), "minutes": length,
             "lps": rate * 1000}
        )  # fmt: skip
    # the leak
    truth["leak"] = None
    if sc.leak_class:
        lo, hi = SIZE_CLASSES[sc.leak_class]
        size = MEAN_INFLOW_LPS * float(rng.uniform(lo, hi)) / 1000
        start = int(rng.integers(sc.warmup_days * 1440, (sc.days - 4) * 1440))
        ramp = int(rng.integers(1440, 4 * 1440)) if sc.leak_kind == "growing" else 1
        profile = np.clip((np.arange(steps) - start + 1) / ramp, 0.0, 1.0)
        name = str(rng.choice(junctions[1:]))
        demand[name] = demand[name] + size * profile
        truth["leak"] = {
            "junction": name, "start": int(ts[start]), "lps": size * 1000,
            "kind": sc.leak_kind, "ramp_minutes": ramp, "class": sc.leak_class,
            "fraction": size * 1000 / MEAN_INFLOW_LPS,
        }  # fmt: skip
    for k, name in enumerate(junctions):
        wn.add_pattern(f"p{name}", (demand[name] / demand[name].mean()).tolist())
        i, j = k // GRID, k % GRID
        elevation = 8.0 + 1.5 * (i + j) + float(rng.uniform(0, 2))
        wn.add_junction(name, base_demand=float(demand[name].mean()), elevation=elevation,
                        demand_pattern=f"p{name}")  # fmt: skip
    wn.add_pipe("inlet", "R", "J00", length=400.0, diameter=0.25, roughness=110.0)
    for i in range(GRID):
        for j in range(GRID):
            if i + 1 < GRID:
                wn.add_pipe(f"a{i}{j}", f"J{i}{j}", f"J{i + 1}{j}", length=150.0,
                            diameter=0.15, roughness=100.0)  # fmt: skip
            if j + 1 < GRID:
                wn.add_pipe(f"b{i}{j}", f"J{i}{j}", f"J{i}{j + 1}", length=150.0,
                            diameter=0.15, roughness=100.0)  # fmt: skip
    opts = wn.options.time
    opts.duration = (steps - 1) * STEP_S
    opts.hydraulic_timestep = opts.pattern_timestep = opts.report_timestep = STEP_S
    opts.quality_timestep = STEP_S
    with tempfile.TemporaryDirectory() as tmp:
        results = wntr.sim.EpanetSimulator(wn).run_sim(file_prefix=os.path.join(tmp, "s"))
    flow = results.link["flowrate"]["inlet"].to_numpy()[:steps] * 1000.0
    p_in = results.node["pressure"]["J00"].to_numpy()[:steps]
    p_far = results.node["pressure"][f"J{GRID - 1}{GRID - 1}"].to_numpy()[:steps]
    series = {
        f"{sc.dma}/inlet/flow_lps": np.round(flow * (1 + 0.01 * rng.standard_normal(steps)), 3),
        f"{sc.dma}/inlet/pressure_m": np.round(p_in + 0.05 * rng.standard_normal(steps), 2),
        f"{sc.dma}/pz-1/pressure_m": np.round(p_far + 0.05 * rng.standard_normal(steps), 2),
    }
    truth["mean_inflow_lps"] = float(flow.mean())
    # nuisance: a stuck sensor
    if rng.random() < 0.3:
        stream = str(rng.choice(list(series)))
        start = int(rng.integers(3 * 1440, (sc.days - 1) * 1440))
        length = int(rng.integers(4 * 60, 12 * 60))
        series[stream][start : start + length] = series[stream][start]
        truth["nuisances"].append(
            {"kind": "stuck_sensor", "stream": stream, "start": int(ts[start]), "minutes": length}
        )
    series["__ts__"] = ts
    return series, truth


def logged(
    ts: np.ndarray, series: dict[str, np.ndarray], minutes: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """1-minute readings as a logger stores them every `minutes`: flows as interval
    means, pressures as samples, stamped at the interval's last minute."""
    n = len(ts) // minutes
    out = {}
    for name, v in series.items():
        blocks = v[: n * minutes].reshape(n, minutes)
        out[name] = np.round(blocks.mean(axis=1), 3) if name.endswith("flow_lps") else blocks[:, -1]
    return ts[minutes - 1 : n * minutes : minutes], out


def _write_csv(path: Path, ts: np.ndarray, series: dict[str, np.ndarray]) -> None:
    names = list(series)
    n = len(ts)
    col_ts = np.repeat(ts, len(names)).astype(str)
    col_stream = np.tile(np.asarray(names), n)
    col_value = np.column_stack([series[k] for k in names]).ravel().astype(str)
    body = np.char.add(
        np.char.add(np.char.add(col_ts, ","), np.char.add(col_stream, ",")), col_value
    )
    path.write_text("ts,stream,value\n" + "\n".join(body.tolist()) + "\n")


def write(sc: Scenario, out: Path, intervals: tuple[int, ...] = ()) -> dict[str, Any]:
    """Simulate and write `<name>.csv`, `<name>.toml` (and `i<N>/<name>.csv` for each
    interval of N > 1 minutes); return the truth."""
    series, truth = simulate(sc)
    ts = series.pop("__ts__")
    names = list(series)
    _write_csv(out / f"{sc.name}.csv", ts, series)
    for minutes in intervals:
        if minutes > 1:
            (out / f"i{minutes}").mkdir(exist_ok=True)
            _write_csv(out / f"i{minutes}" / f"{sc.name}.csv", *logged(ts, series, minutes))
    (out / f"{sc.name}.toml").write_text(
        f'[[dma]]\nname = "{sc.dma}"\ninflow = ["{names[0]}"]\n'
        f'pressure = ["{names[1]}", "{names[2]}"]\n'
    )
    truth["csv"] = f"{sc.name}.csv"
    truth["config"] = f"{sc.name}.toml"
    return truth


def scenarios(per_class: int, no_leak: int, days: int, seed: int) -> list[Scenario]:
    out = []
    k = 0
    for cls in SIZE_CLASSES:
        for kind in ("abrupt", "growing"):
            for _ in range(per_class):
                out.append(Scenario(f"s{k:03d}", days, seed + k, cls, kind))
                k += 1
    for _ in range(no_leak):
        out.append(Scenario(f"s{k:03d}", days, seed + k, None))
        k += 1
    return out


def generate(
    out: Path,
    per_class: int,
    no_leak: int,
    days: int,
    seed: int,
    *,
    intervals: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    truths = [write(sc, out, intervals) for sc in scenarios(per_class, no_leak, days, seed)]
    (out / "truth.json").write_text(json.dumps(truths, indent=1))
    return truths
