"""Simulated meters: the model's state written into register images by register map.

Each SimMeter renders its model's own register map (registers.py, maps/*.toml),
not the gateway's profiles, so the gateway reading the simulator checks both.

    SimMeter(name, regmap, unit_id, dma, role, index=0)
    FaultSpec(device, kind, start_s=0.0, end_s=inf, delay_s=0.5, code=4)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np

from firmware_sim.water.model import WaterModel
from firmware_sim.water.registers import Field, RegisterMap, wrap

Role = Literal["inlet", "zone", "amr", "hf"]
FaultKind = Literal[
    "stuck", "dead", "slow", "garbage", "crc", "exception", "wrong_unit",
    "tamper", "low_battery", "empty_pipe", "meter_leak", "reverse_flow",
]  # fmt: skip
ALARMS = ("tamper", "low_battery", "empty_pipe", "meter_leak", "reverse_flow")
PIPE_AREA_M2 = math.pi * 0.1**2  # DN200


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault on one device during [start_s, end_s) of sim time. Alarm kinds
    (tamper, low_battery, empty_pipe, meter_leak, reverse_flow) set that bit."""

    device: str
    kind: FaultKind
    start_s: float = 0.0
    end_s: float = math.inf
    delay_s: float = 0.5  # for slow replies
    code: int = 4  # for exception: the Modbus exception code returned

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


class SimMeter:
    def __init__(
        self, name: str, regmap: RegisterMap, *, unit_id: int, dma: int, role: Role, index: int = 0
    ) -> None:
        self.name = name
        self.regmap = regmap
        self.profile = regmap.model  # the name of the gateway profile that reads this model
        self.unit_id = unit_id
        self.dma = dma  # 0-based
        self.role = role
        self.index = index
        self.tcp_port = 0
        self.tables: dict[int, list[int]] = {fc: [0] * regmap.size(fc) for fc in (1, 2, 3, 4)}
        self.faults: list[FaultSpec] = []
        for f in regmap.fields:
            if f.type == "bool":
                self.tables[f.fc][f.address] = f.power_on
        self.requests = 0
        self._rendered_tick = -1
        self._noise = np.random.default_rng(unit_id * 7919 + dma).standard_normal(4093)

    def fault(self, t: float, *kinds: str) -> FaultSpec | None:
        for f in self.faults:
            if f.kind in kinds and f.active(t):
                return f
        return None

    def values(self, model: WaterModel) -> dict[str, float]:
        state = model.dma(self.dma)
        t = model.t
        alarms = {a: float(self.fault(t, a) is not None) for a in ALARMS}
        if self.role == "inlet":
            q = state.inflow_lps
            return {
                "flow_lps": q,
                "volume_m3": state.volume_l / 1000.0,
                "pressure_m": state.inlet_head_m,
                "velocity_ms": q / 1000.0 / PIPE_AREA_M2,
                **alarms,
            }
        if self.role == "zone":
            return {
                "pressure_m": state.zone_head_m[self.index],
                "battery_v": 3.6 - 1e-7 * t,
                "uptime_s": t,
                "temperature_c": 24.0 + 3.0 * math.sin(2 * math.pi * (t / 86400.0 - 0.3)),
                **alarms,
            }
        if self.role == "amr":
            # valve_open is a coil the gateway writes: it keeps what was written
            return {
                "volume_m3": state.amr_volume_l[self.index] / 1000.0,
                "battery_pct": 87.0,
                "reed_ok": 1.0,
                **alarms,
            }
        return {"battery_v": 3.5}

    def invalidate(self) -> None:
        """Render again on the next request (after a fault was added or removed)."""
        self._rendered_tick = -1

    def refresh(self, model: WaterModel, now: float | None = None) -> None:
        """Render the model's state into the register images (not while stuck).
        Points change once a model tick; a sample block follows `now`, the exact
        sim time, so a 100 Hz logger fills at 100 Hz rather than a tick at a time."""
        if self.fault(model.t, "stuck") is not None:
            return
        if self._rendered_tick != model.ticks:
            self._render_points(model)
            self._rendered_tick = model.ticks
        block = self.regmap.buffer
        if block is not None:
            self._render_block(
                model,
                now=model.t if now is None else now,
                fc=block.fc,
                seq_at=block.seq_address,
                data_at=block.data_address,
                size=block.size,
                rate=block.rate_hz,
                scale=block.scale,
                offset=block.offset,
            )

    def _render_points(self, model: WaterModel) -> None:
        values = self.values(model)
        bits: dict[tuple[int, int], int] = {}
        for f in self.regmap.fields:
            if f.type == "string":
                self._put(f, f.encode_text(f"SIM{self.unit_id:05d}"))
                continue
            if f.name not in values and f.type != "bit":
                continue  # not modelled: keeps its power-on or written value
            value = wrap(f, values.get(f.name, 0.0))
            if f.type == "bit":
                key = (f.fc, f.address)
                bits[key] = bits.get(key, 0) | f.encode(value)[0]
                continue
            self._put(f, f.encode(value))
        for (fc, address), word in bits.items():
            self.tables[fc][address] = word

    def _put(self, f: Field, regs: list[int]) -> None:
        self.tables[f.fc][f.address : f.address + len(regs)] = regs

    def _render_block(
        self,
        model: WaterModel,
        *,
        now: float,
        fc: int,
        seq_at: int,
        data_at: int,
        size: int,
        rate: float,
        scale: float,
        offset: float,
    ) -> None:
        """The newest `size` samples, oldest first, and the newest's sequence number.
        Sample k is a pure function of k, so any read sees a consistent stream."""
        seq = int(now * rate)
        k = np.arange(seq - size, seq)
        base = model.zone_head(self.dma, 0)
        # a 0.3 Hz surge plus sensor noise, so transients and gaps are visible
        p = base + 0.15 * np.sin(2 * np.pi * 0.3 * k / rate) + 0.05 * self._noise[k % 4093]
        raw = np.round((p - offset) / scale).astype(np.int64) % 65536
        raw[k < 0] = 0
        table = self.tables[fc]
        table[seq_at] = (seq >> 16) & 0xFFFF
        table[seq_at + 1] = seq & 0xFFFF
        table[data_at : data_at + size] = [int(v) for v in raw]
