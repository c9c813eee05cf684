"""The simulated bus's J1939 side: engine and cluster frames, DM1 and its TP.BAM.

    EcuEncoder.frames({"rpm": 1450.0, ...}) --cantools encode_message (ecu.dbc)-->
        [(29-bit id, 8 bytes)]
    dm1(faults, red, amber) --> DM1 payload --> one frame, or TP.CM BAM + TP.DT frames

The encoder is the simulator's own (its DBC, its DM1 and transport code, from SAE
J1939-71/-73/-21), not the gateway's decoder run backwards, so a bug in either
shows when the gateway decodes what the simulator sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import cantools

DBC: Final = Path(__file__).with_name("ecu.dbc")
PGN_DM1: Final = 0xFECA
PGN_TP_CM: Final = 0xEC00
PGN_TP_DT: Final = 0xEB00
GLOBAL: Final = 0xFF  # destination address of a broadcast
ENGINE: Final = 0x00  # source address of the engine ECU

# the unit's JSON signal names (its `can` message) -> DBC signal
SIGNALS: Final[dict[str, str]] = {
    "rpm": "EngineSpeed",
    "coolant_c": "EngineCoolantTemp",
    "oil_kpa": "EngineOilPressure",
    "fuel_lph": "EngineFuelRate",
    "battery_v": "BatteryPotentialPowerInput1",
    "speed_kmh": "WheelBasedVehicleSpeed",
    "fuel_pct": "FuelLevel1",
}


def can_id(pgn: int, source: int, priority: int = 6) -> int:
    """A 29-bit identifier: priority, PGN (with the destination in PS for PDU1), source."""
    return (priority << 26) | (pgn << 8) | source


class EcuEncoder:
    """Frames carrying a set of signal values, one per DBC message that has any."""

    def __init__(self, dbc: Path = DBC) -> None:
        db = cantools.database.load_file(str(dbc))
        if not isinstance(db, cantools.database.can.Database):
            raise ValueError(f"{dbc} is not a CAN database")
        self._db = db
        self._messages = [(m.name, m.frame_id, {s.name for s in m.signals}) for m in db.messages]

    def frames(self, values: Mapping[str, float]) -> list[tuple[int, bytes]]:
        by_signal = {SIGNALS[k]: v for k, v in values.items() if k in SIGNALS}
        out = []
        for name, frame_id, signals in self._messages:
            if signals <= by_signal.keys():
                data = self._db.encode_message(
                    name, {s: by_signal[s] for s in signals}, padding=True
                )
                out.append((frame_id, bytes(data)))
        return out


def dm1(faults: Iterable[tuple[int, int, int]], *, red: bool, amber: bool) -> bytes:
    """A DM1 payload (J1939-73): lamp byte, flash byte, then per DTC the SPN's low 16
    bits, its high 3 bits with the FMI, and the occurrence count (conversion method 0).
    With no fault it is the 'no active DTC' message."""
    lamps = (int(red) << 4) | (int(amber) << 2)  # MIL 7-6, red 5-4, amber 3-2, protect 1-0
    out = bytearray([lamps, 0xFF])
    codes = list(faults)
    for spn, fmi, oc in codes:
        out += bytes([spn & 0xFF, (spn >> 8) & 0xFF, ((spn >> 16) & 0x7) << 5 | (fmi & 0x1F)])
        out.append(oc & 0x7F)
    if not codes:
        out += bytes([0, 0, 0, 0])
    return bytes(out.ljust(8, b"\xff"))


def dm1_frames(payload: bytes, source: int = ENGINE) -> list[tuple[int, bytes]]:
    """The DM1 as the bus carries it: one frame up to 8 bytes, else a TP.BAM
    announcement and its numbered 7-byte packets (J1939-21), padded with 0xFF."""
    if len(payload) <= 8:
        return [(can_id(PGN_DM1, source), payload)]
    packets = -(-len(payload) // 7)
    size = len(payload).to_bytes(2, "little")
    announce = bytes([0x20, *size, packets, 0xFF, *PGN_DM1.to_bytes(3, "little")])
    frames = [(can_id(PGN_TP_CM | GLOBAL, source, 7), announce)]
    for n in range(packets):
        chunk = payload[7 * n : 7 * n + 7].ljust(7, b"\xff")
        frames.append((can_id(PGN_TP_DT | GLOBAL, source, 7), bytes([n + 1]) + chunk))
    return frames
