"""The simulated meters' register maps: each model's firmware, as data (maps/*.toml).

    maps/emf-flow-meter.toml --load_maps--> {model: RegisterMap(fields, buffer)}
    Field.encode(value) --pymodbus convert_to_registers--> [16-bit words]

A map is the device's side of the wire, written from its "manual", apart from the
gateway's profiles (config/profiles), and encoded with pymodbus's own conversion
rather than the gateway's decoder run backwards: a wrong address, word order or
scale in either shows up when the gateway reads the simulator.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pymodbus.client.mixin import ModbusClientMixin

FieldType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bit", "bool",
                    "string"]  # fmt: skip
Table = Literal["coil", "discrete", "holding", "input"]
FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
MAPS = Path(__file__).resolve().parent / "maps"
_DATATYPE = ModbusClientMixin.DATATYPE
_NUMBERS = {
    "int16": _DATATYPE.INT16,
    "uint16": _DATATYPE.UINT16,
    "int32": _DATATYPE.INT32,
    "uint32": _DATATYPE.UINT32,
    "float32": _DATATYPE.FLOAT32,
    "float64": _DATATYPE.FLOAT64,
}


class MapError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One value the firmware keeps in its registers (a bit, for coils and discrete
    inputs). The register holds value / scale; `words` is the order of the words of
    a 32/64-bit value ("big": high word first)."""

    name: str
    table: Table
    address: int
    type: FieldType = "uint16"
    words: Literal["big", "little"] = "big"
    scale: float = 1.0
    bit: int = 0  # for "bit": which bit of the register, 0 = least significant
    length: int = 0  # for "string": registers
    rollover: float = 0.0  # the value at which a totaliser wraps to 0
    power_on: int = 0  # for "bool": the state at power on

    @property
    def fc(self) -> int:
        return FC[self.table]

    @property
    def width(self) -> int:
        if self.type == "string":
            return self.length
        if self.type in ("bit", "bool"):
            return 1
        return int(_NUMBERS[self.type].value[1])

    def encode(self, value: float) -> list[int]:
        """The registers holding `value` (for "bit", the word with only this bit)."""
        if self.type == "bool":
            return [1 if value >= 0.5 else 0]
        if self.type == "bit":
            return [int(value >= 0.5) << self.bit]
        if self.type == "string":
            raise TypeError(f"{self.name}: use encode_text for a string")
        raw: float = value / self.scale
        kind = _NUMBERS[self.type]
        if not self.type.startswith("float"):
            bits = 16 * self.width
            whole = round(raw) % (1 << bits)  # a counter wraps, as the hardware's does
            if self.type.startswith("int") and whole >= 1 << (bits - 1):
                whole -= 1 << bits
            raw = whole
        return ModbusClientMixin.convert_to_registers(raw, kind, word_order=self.words)

    def encode_text(self, text: str) -> list[int]:
        padded = text.encode("ascii")[: 2 * self.length].ljust(2 * self.length, b"\x00")
        return ModbusClientMixin.convert_to_registers(
            padded.decode("ascii"), _DATATYPE.STRING, string_encoding="ascii"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SampleBuffer:
    """A high-rate logger's ring of the newest `size` samples, oldest first, with the
    uint32 sequence number (high word first) of the newest at `seq_address`."""

    name: str
    table: Table
    seq_address: int
    data_address: int
    size: int
    rate_hz: float
    scale: float = 1.0
    offset: float = 0.0

    @property
    def fc(self) -> int:
        return FC[self.table]


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterMap:
    """A device model's registers; `model` is also the name of the gateway profile
    that reads it."""

    model: str
    fields: tuple[Field, ...] = ()
    buffer: SampleBuffer | None = None

    def size(self, fc: int) -> int:
        """Registers (or bits) the device serves in table `fc`, with spare room for
        the setpoints a gateway writes."""
        ends = [f.address + f.width for f in self.fields if f.fc == fc]
        if self.buffer is not None and self.buffer.fc == fc:
            ends += [self.buffer.seq_address + 2, self.buffer.data_address + self.buffer.size]
        return max(ends, default=0) + 8


def _build(cls: type[Any], raw: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise MapError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    try:
        item = cls(**raw)
    except TypeError as err:
        raise MapError(f"{where}: {err}") from None
    if item.table not in get_args(Table):
        raise MapError(f"{where}: table {item.table!r} is not one of {get_args(Table)}")
    return item


def load_map(path: Path) -> RegisterMap:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    if not isinstance(data.get("model"), str):
        raise MapError(f'{path}: needs the model\'s name, e.g. model = "emf-flow-meter"')
    fields = []
    for n, raw in enumerate(data.get("register", [])):
        field = _build(Field, raw, f"{path}: register {n + 1}")
        if field.type not in get_args(FieldType):
            raise MapError(f"{path}: {field.name}: type {field.type!r} is unknown")
        if (field.fc in (1, 2)) != (field.type == "bool"):
            raise MapError(f"{path}: {field.name}: coils and discrete inputs hold bools only")
        fields.append(field)
    buffer = data.get("buffer")
    return RegisterMap(
        model=str(data["model"]),
        fields=tuple(fields),
        buffer=None if buffer is None else _build(SampleBuffer, buffer, f"{path}: buffer"),
    )


def load_maps(folder: Path = MAPS) -> dict[str, RegisterMap]:
    maps = [load_map(p) for p in sorted(folder.glob("*.toml"))]
    return {m.model: m for m in maps}


def wrap(field: Field, value: float) -> float:
    """A totaliser's value as its register shows it, after rollovers."""
    return math.fmod(value, field.rollover) if field.rollover > 0 else value
