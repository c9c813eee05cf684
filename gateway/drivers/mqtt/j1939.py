r"""SAE J1939 decoding with cantools and the project's DBC (`j1939.dbc`).

    frames [(29-bit id, data)] --PGN--> DBC message --raw ints--> drop "not available"
                                                   \--> scale --> (quantity, value)
    DM1 (single frame, or TP.CM BAM + TP.DT reassembled, across a unit's messages)
        --> lamps + [(SPN, FMI, OC)]

Messages match by PGN, whatever the priority and source address, as J1939
requires. A raw value in the "error" or "not available" ranges (for n >= 8 bits,
anything from 0xFB << (n - 8), so 0xFB..0xFF and 0xFB00..0xFFFF; for 2-bit states, 3)
is dropped, never scaled into a plausible-looking number.

The functions that build frames (`encode_signals`, `encode_dm1`) serve the tests;
the bus simulator has its own DBC and encoder (firmware_sim/buses/ecu.py), so a
mistake here is not mirrored there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import cantools
from cantools.database.can import Message

DBC_PATH: Final = Path(__file__).with_name("j1939.dbc")

PGN_DM1: Final = 0xFECA
PGN_TP_CM: Final = 0xEC00
PGN_TP_DT: Final = 0xEB00
TP_BAM: Final = 0x20

# DBC signal -> stream quantity (the `bus/<id>/<quantity>` names)
QUANTITIES: Final[dict[str, str]] = {
    "EngineSpeed": "rpm",
    "EngineCoolantTemp": "coolant_c",
    "EngineOilPressure": "oil_kpa",
    "EngineFuelRate": "fuel_lph",
    "BatteryPotentialPowerInput1": "battery_v",
    "WheelBasedVehicleSpeed": "speed_kmh",
    "FuelLevel1": "fuel_pct",
}


class J1939Error(ValueError):
    """A frame that cannot be decoded; `reason` is the reject code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def pgn_of(can_id: int) -> int:
    """The parameter group number of a 29-bit identifier (PDU1 drops the destination)."""
    dp = (can_id >> 24) & 0x3  # extended data page + data page
    pf = (can_id >> 16) & 0xFF
    ps = (can_id >> 8) & 0xFF
    return (dp << 16) | (pf << 8) | (ps if pf >= 240 else 0)


def can_id_of(pgn: int, source: int = 0, priority: int = 6) -> int:
    return (priority << 26) | (pgn << 8) | source


def is_available(raw: int, bits: int) -> bool:
    if bits >= 8:
        return raw < (0xFB << (bits - 8))
    if bits == 2:
        return raw != 3
    return raw != (1 << bits) - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Lamps:
    mil: int = 0
    red: int = 0
    amber: int = 0
    protect: int = 0

    @classmethod
    def from_byte(cls, byte: int) -> Lamps:
        def state(shift: int) -> int:
            value = (byte >> shift) & 0x3
            return 1 if value == 1 else 0  # 2 reserved, 3 not available: both read as off

        return cls(mil=state(6), red=state(4), amber=state(2), protect=state(0))

    def to_byte(self) -> int:
        return (self.mil << 6) | (self.red << 4) | (self.amber << 2) | self.protect


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One active DTC, with the lamp status of the DM1 that carried it."""

    spn: int
    fmi: int
    oc: int
    lamps: Lamps

    @property
    def lamp(self) -> str:
        """The most severe lamp lit: red, amber, mil, protect or off."""
        for name in ("red", "amber", "mil", "protect"):
            if getattr(self.lamps, name):
                return name
        return "off"


def decode_dm1(data: bytes) -> list[Fault]:
    """Active faults of a DM1 payload (8 bytes, or longer when reassembled from TP.BAM).

    The first two bytes are lamps and flash; then 4 bytes per DTC: SPN low 16 bits,
    SPN high 3 bits + FMI, conversion method + occurrence count (method 4 layout).
    A DTC of all zeros is the 'no active fault' filler, all 0xFF is padding."""
    if len(data) < 6:
        raise J1939Error("bad_dm1", f"DM1 needs at least 6 bytes, got {len(data)}")
    lamps = Lamps.from_byte(data[0])
    faults: list[Fault] = []
    for i in range(2, len(data) - 3, 4):
        b0, b1, b2, b3 = data[i : i + 4]
        if (b0, b1, b2, b3) in ((0, 0, 0, 0), (0xFF, 0xFF, 0xFF, 0xFF)):
            continue
        spn = b0 | (b1 << 8) | ((b2 >> 5) << 16)
        faults.append(Fault(spn=spn, fmi=b2 & 0x1F, oc=b3 & 0x7F, lamps=lamps))
    return faults


def encode_dm1(faults: Iterable[tuple[int, int, int]], lamps: Lamps) -> bytes:
    """A DM1 payload; with no fault it is the standard 'no active DTC' message."""
    out = bytearray([lamps.to_byte(), 0xFF])
    codes = list(faults)
    if not codes:
        out += bytes([0, 0, 0, 0, 0xFF, 0xFF])
    for spn, fmi, oc in codes:
        out += bytes([spn & 0xFF, (spn >> 8) & 0xFF, ((spn >> 16) & 0x7) << 5 | (fmi & 0x1F)])
        out.append(oc & 0x7F)
    if len(out) < 8:
        out += b"\xff" * (8 - len(out))
    return bytes(out)


def bam_frames(pgn: int, payload: bytes, source: int = 0) -> list[tuple[int, bytes]]:
    """A TP.CM BAM announcement and its TP.DT packets for a payload over 8 bytes."""
    packets = (len(payload) + 6) // 7
    cm = bytes([TP_BAM, len(payload) & 0xFF, len(payload) >> 8, packets, 0xFF])
    cm += bytes([pgn & 0xFF, (pgn >> 8) & 0xFF, (pgn >> 16) & 0xFF])
    frames = [(can_id_of(PGN_TP_CM | 0xFF, source, 7), cm)]
    for n in range(packets):
        chunk = payload[n * 7 : n * 7 + 7]
        chunk += b"\xff" * (7 - len(chunk))
        frames.append((can_id_of(PGN_TP_DT | 0xFF, source, 7), bytes([n + 1]) + chunk))
    return frames


# A BAM's packets come 50-200 ms apart on the bus (J1939-21 allows 750 ms); a unit
# may cut its frames into messages anywhere, so a transfer may continue in the
# next message, but not after this much message time without a packet.
BAM_TIMEOUT_MS: Final = 2_000


@dataclasses.dataclass(slots=True)
class _Transfer:
    pgn: int
    size: int
    packets: int
    parts: dict[int, bytes]
    last_ms: int


class BamAssembler:
    """Reassembles TP.BAM transfers, one per source address, across calls.

    A transfer left incomplete is dropped, and listed in `abandoned`, when a new
    BAM from the same source replaces it (as J1939-21 says) or when `expire` finds
    no packet for `timeout_ms` of message time."""

    def __init__(self, timeout_ms: int = BAM_TIMEOUT_MS) -> None:
        self.timeout_ms = timeout_ms
        self._open: dict[int, _Transfer] = {}
        self.abandoned: list[str] = []

    def feed(self, can_id: int, data: bytes, now_ms: int = 0) -> tuple[int, bytes] | None:
        """Take a TP frame; return (pgn, payload) when a transfer completes."""
        pgn = pgn_of(can_id)
        source = can_id & 0xFF
        if pgn == PGN_TP_CM:
            if len(data) < 8 or data[0] != TP_BAM:
                return None  # RTS/CTS is peer-to-peer; a gateway on the bus only sees BAM
            size = data[1] | (data[2] << 8)
            packets = data[3]
            if packets != (size + 6) // 7 or not 9 <= size <= 1785:
                raise J1939Error("bad_tp", f"BAM announces {size} bytes in {packets} packets")
            if source in self._open:
                self._abandon(source, "replaced by a new BAM")
            target = data[5] | (data[6] << 8) | (data[7] << 16)
            self._open[source] = _Transfer(target, size, packets, {}, now_ms)
            return None
        if pgn == PGN_TP_DT:
            t = self._open.get(source)
            if t is None:
                raise J1939Error("bad_tp", f"TP.DT from {source:#x} without a BAM")
            if len(data) != 8 or not 1 <= data[0] <= t.packets:
                raise J1939Error("bad_tp", f"TP.DT packet {data[:1].hex()} out of sequence")
            t.parts[data[0]] = data[1:]
            t.last_ms = now_ms
            if len(t.parts) == t.packets:
                del self._open[source]
                payload = b"".join(t.parts[i] for i in range(1, t.packets + 1))[: t.size]
                return t.pgn, payload
        return None

    def expire(self, now_ms: int) -> None:
        for source in [s for s, t in self._open.items() if now_ms - t.last_ms > self.timeout_ms]:
            self._abandon(source, f"no packet for {self.timeout_ms} ms")

    def _abandon(self, source: int, why: str) -> None:
        t = self._open.pop(source)
        self.abandoned.append(
            f"TP.BAM of PGN {t.pgn:#x} from {source:#x} dropped after {len(t.parts)} of "
            f"{t.packets} packets: {why}"
        )

    @property
    def incomplete(self) -> int:
        return len(self._open)


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """What a list of frames carried: health signals and, if a DM1 came, its faults."""

    signals: tuple[tuple[str, float], ...]
    faults: tuple[Fault, ...] | None  # None: no DM1 among the frames


class J1939Decoder:
    """Frames to (quantity, value) pairs and DM1 faults, using the DBC."""

    def __init__(self, dbc: Path = DBC_PATH) -> None:
        db = cantools.database.load_file(str(dbc))
        if not isinstance(db, cantools.database.can.Database):
            raise ValueError(f"{dbc} is not a CAN database")
        self._by_pgn: dict[int, tuple[Message, list[tuple[str, str, int, float, float]]]] = {}
        for msg in db.messages:
            mapped = [
                (s.name, QUANTITIES[s.name], s.length, float(s.scale), float(s.offset))
                for s in msg.signals
                if s.name in QUANTITIES
            ]
            self._by_pgn[pgn_of(msg.frame_id)] = (msg, mapped)
        self._messages = {pgn: m for pgn, (m, _) in self._by_pgn.items()}

    def decode_frame(self, can_id: int, data: bytes) -> list[tuple[str, float]]:
        """The mapped signals of one frame, 'not available' ones dropped; [] if unknown PGN."""
        found = self._by_pgn.get(pgn_of(can_id))
        if found is None or pgn_of(can_id) == PGN_DM1:
            return []
        msg, mapped = found
        if len(data) != 8:
            raise J1939Error("bad_frame", f"PGN {pgn_of(can_id)} needs 8 bytes, got {len(data)}")
        raw = msg.decode(data, decode_choices=False, scaling=False)
        if not isinstance(raw, dict):  # only multiplexed container messages decode to a list
            raise J1939Error("bad_frame", f"PGN {pgn_of(can_id)} is a container message")
        out: list[tuple[str, float]] = []
        for name, quantity, bits, scale, offset in mapped:
            value = raw[name]
            if isinstance(value, int) and is_available(value, bits):
                out.append((quantity, value * scale + offset))
        return out

    def decode_frames(
        self,
        frames: Iterable[tuple[int, bytes]],
        bam: BamAssembler | None = None,
        now_ms: int = 0,
    ) -> Decoded:
        """Decode one message's frames. With a `bam` kept per unit, a TP.BAM transfer
        may continue in the unit's next message; without one, it must be complete here."""
        signals: list[tuple[str, float]] = []
        faults: list[Fault] | None = None
        whole = bam is None
        if bam is None:
            bam = BamAssembler()
        bam.expire(now_ms)
        for can_id, data in frames:
            pgn = pgn_of(can_id)
            if pgn in (PGN_TP_CM, PGN_TP_DT):
                done = bam.feed(can_id, data, now_ms)
                if done is not None and done[0] == PGN_DM1:
                    faults = (faults or []) + decode_dm1(done[1])
            elif pgn == PGN_DM1:
                faults = (faults or []) + decode_dm1(data)
            else:
                signals.extend(self.decode_frame(can_id, data))
        if whole and bam.incomplete:
            raise J1939Error("bad_tp", "a TP.BAM transfer is incomplete in this message")
        return Decoded(tuple(signals), None if faults is None else tuple(faults))

    def encode_signals(
        self, values: Mapping[str, float], source: int = 0
    ) -> list[tuple[int, bytes]]:
        """Frames carrying `values` (keyed by quantity); unset signals are 'not available'."""
        by_quantity = {q: s for s, q in QUANTITIES.items()}
        frames = []
        for pgn, (msg, mapped) in self._by_pgn.items():
            names = {name for name, *_ in mapped}
            wanted = {by_quantity[q]: v for q, v in values.items() if by_quantity.get(q) in names}
            if not wanted:
                continue
            raw = {s.name: (1 << s.length) - 1 for s in msg.signals}
            for name, _, _, scale, offset in mapped:
                if name in wanted:
                    raw[name] = max(0, round((wanted[name] - offset) / scale))
            data = msg.encode(raw, scaling=False, strict=False)
            # bits no signal covers are sent as 1s, as J1939 pads
            covered = msg.encode(
                {s.name: (1 << s.length) - 1 for s in msg.signals},
                scaling=False,
                strict=False,
            )
            padded = bytes(d | (~c & 0xFF) for d, c in zip(data, covered, strict=True))
            frames.append((can_id_of(pgn, source), padded))
        return frames
