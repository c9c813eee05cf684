"""Meter profiles: register maps as data, one TOML file per meter model.

    config/profiles/emf-flow-meter.toml --load_profiles--> {name: Profile(points...)}

A profile is checked when it is loaded: overlapping points, an unknown type, a
register out of range or a bit out of a register is refused with the file and
the point named, so a wiring mistake surfaces at start, not at 3 a.m.

    load_profile(path: str | Path) -> Profile
    load_profiles(folder: str | Path) -> dict[str, Profile]
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

PointType = Literal[
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "bit",
    "bool",
    "string",
]
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Role = Literal["", "flow", "totaliser", "pressure", "alarm", "reverse_flow", "info"]

FUNCTION_CODES = (1, 2, 3, 4)
TABLES = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
WIDTH = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
    "bit": 1,
    "bool": 1,
}
MAX_ADDRESS = 65535


class ProfileError(ValueError):
    def __init__(self, file: str, point: str, problem: str) -> None:
        self.file = file
        self.point = point
        where = f"{file}: point {point!r}" if point else file
        super().__init__(f"{where}: {problem}")


@dataclasses.dataclass(frozen=True, slots=True)
class Point:
    """One value in a meter's register map. For fc 1 and 2 the address is a bit
    (coil or discrete input); for fc 3 and 4 it is a 16-bit register."""

    name: str
    fc: int
    address: int
    type: PointType = "uint16"
    order: Order = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    kind: str = ""
    min: float = -math.inf
    max: float = math.inf
    bit: int = 0  # for type "bit": which bit of the register, 0 = least significant
    length: int = 0  # for type "string": registers
    role: Role = ""  # "info": a nameplate value read once when the device comes up
    rollover: float = 0.0  # for a totaliser: the scaled value at which it wraps to 0
    emit: bool = True  # False for points only used by others (strings, raw status)

    @property
    def width(self) -> int:
        """Registers (fc 3/4) or bits (fc 1/2) the point occupies."""
        return self.length if self.type == "string" else WIDTH[self.type]

    @property
    def end(self) -> int:
        return self.address + self.width


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    name: str
    file: str
    description: str = ""
    points: tuple[Point, ...] = ()
    merge_requests: bool = True
    max_gap: int = 8
    max_registers: int = 125
    sample_block: SampleBlock | None = None

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)


@dataclasses.dataclass(frozen=True, slots=True)
class SampleBlock:
    """A high-rate logger's buffer: a uint32 sequence number (of the newest
    sample) at `seq_address`, then `size` int16/uint16 samples, oldest first, at
    `data_address`, all in holding or input registers. Reading it often enough
    gives every sample exactly once; a jump in the sequence is a counted gap."""

    name: str
    fc: int
    seq_address: int
    data_address: int
    size: int
    rate_hz: float
    type: Literal["int16", "uint16"] = "uint16"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    kind: str = ""


_POINT_KEYS = {f.name for f in dataclasses.fields(Point)} | {"table"}
_BLOCK_KEYS = {f.name for f in dataclasses.fields(SampleBlock)} | {"table"}


def _fc(file: str, name: str, raw: dict[str, Any]) -> int:
    if "table" in raw:
        table = raw.pop("table")
        if table not in TABLES:
            raise ProfileError(file, name, f"unknown table {table!r}; use one of {list(TABLES)}")
        if "fc" in raw and raw["fc"] != TABLES[table]:
            raise ProfileError(file, name, f"table {table!r} contradicts fc = {raw['fc']}")
        raw["fc"] = TABLES[table]
    fc = raw.get("fc")
    if fc not in FUNCTION_CODES:
        raise ProfileError(file, name, f"fc must be one of 1, 2, 3, 4 (or table = ...), got {fc!r}")
    return int(fc)


def _point(file: str, raw: dict[str, Any]) -> Point:
    raw = dict(raw)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(file, "?", 'every point needs a name, e.g. name = "flow_lps"')
    unknown = set(raw) - _POINT_KEYS
    if unknown:
        raise ProfileError(
            file, name, f"unknown keys {sorted(unknown)}; known: {sorted(_POINT_KEYS)}"
        )
    fc = _fc(file, name, raw)
    ptype = raw.get("type", "bool" if fc in (1, 2) else "uint16")
    if ptype not in get_args(PointType):
        raise ProfileError(
            file, name, f"unknown type {ptype!r}; use one of {', '.join(get_args(PointType))}"
        )
    raw["type"] = ptype
    if raw.get("order", "ABCD") not in get_args(Order):
        raise ProfileError(file, name, "order must be one of ABCD, CDAB, BADC, DCBA")
    if raw.get("role", "") not in get_args(Role):
        raise ProfileError(file, name, f"role must be one of {get_args(Role)}")
    for key in ("scale", "offset", "min", "max", "rollover"):
        if key in raw:
            if isinstance(raw[key], bool) or not isinstance(raw[key], int | float):
                raise ProfileError(file, name, f"{key} must be a number, got {raw[key]!r}")
            raw[key] = float(raw[key])
    try:
        point = Point(**raw)
    except TypeError as err:
        raise ProfileError(file, name, str(err)) from err
    if (fc in (1, 2)) != (ptype == "bool"):
        raise ProfileError(
            file, name, 'coils and discrete inputs (fc 1, 2) have type "bool"; registers do not'
        )
    if ptype == "string" and point.length <= 0:
        raise ProfileError(file, name, "a string needs length = <registers>, e.g. length = 8")
    if ptype == "bit" and not 0 <= point.bit <= 15:
        raise ProfileError(file, name, f"bit must be 0..15, got {point.bit}")
    if not point.address >= 0 or point.end - 1 > MAX_ADDRESS:
        raise ProfileError(
            file, name, f"register {point.address}..{point.end - 1} is out of range 0..65535"
        )
    if point.scale == 0:
        raise ProfileError(file, name, "scale must not be 0")
    if point.min > point.max:
        raise ProfileError(file, name, f"min {point.min} is above max {point.max}")
    if point.role == "totaliser" and point.rollover < 0:
        raise ProfileError(file, name, "rollover must be >= 0 (0 means it never wraps)")
    return point


def _block(file: str, raw: dict[str, Any]) -> SampleBlock:
    raw = dict(raw)
    name = str(raw.get("name", "?"))
    unknown = set(raw) - _BLOCK_KEYS
    if unknown:
        raise ProfileError(
            file, name, f"unknown keys {sorted(unknown)}; known: {sorted(_BLOCK_KEYS)}"
        )
    fc = _fc(file, name, raw)
    if fc not in (3, 4):
        raise ProfileError(file, name, "a sample block lives in holding or input registers")
    try:
        block = SampleBlock(**raw)
    except TypeError as err:
        raise ProfileError(file, name, str(err)) from err
    if not 1 <= block.size <= 123:
        raise ProfileError(file, name, "size must be 1..123 so that one read takes the block")
    if block.data_address + block.size - 1 > MAX_ADDRESS or block.seq_address < 0:
        raise ProfileError(file, name, "register out of range 0..65535")
    if block.rate_hz <= 0:
        raise ProfileError(file, name, "rate_hz must be positive, e.g. 100")
    return block


def _check_overlaps(file: str, points: tuple[Point, ...]) -> None:
    for fc in FUNCTION_CODES:
        taken: dict[tuple[int, int], str] = {}  # (register, bit or -1) -> point name
        for p in (p for p in points if p.fc == fc):
            for reg in range(p.address, p.end):
                keys = [(reg, p.bit)] if p.type == "bit" else [(reg, b) for b in range(-1, 16)]
                for key in keys:
                    other = taken.get(key) or taken.get((reg, -1))
                    if other is not None and other != p.name:
                        raise ProfileError(
                            file,
                            p.name,
                            f"overlaps point {other!r} at fc {fc} register {reg}",
                        )
                taken[(reg, p.bit if p.type == "bit" else -1)] = p.name
    names = [p.name for p in points]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ProfileError(file, sorted(dupes)[0], "point names must be unique in a profile")


def parse_profile(data: dict[str, Any], file: str) -> Profile:
    head = data.get("profile", {})
    if not isinstance(head, dict) or not head.get("name"):
        raise ProfileError(file, "", 'missing [profile] table with name = "..."')
    known = {"name", "description", "merge_requests", "max_gap", "max_registers"}
    unknown = set(head) - known
    if unknown:
        raise ProfileError(file, "", f"[profile] has unknown keys {sorted(unknown)}")
    extra = set(data) - {"profile", "points", "sample_block"}
    if extra:
        raise ProfileError(file, "", f"unknown tables {sorted(extra)}; use [[points]]")
    points = tuple(_point(file, p) for p in data.get("points", []))
    _check_overlaps(file, points)
    block = _block(file, data["sample_block"]) if "sample_block" in data else None
    if not points and block is None:
        raise ProfileError(file, "", "a profile needs at least one [[points]] entry")
    max_registers = int(head.get("max_registers", 125))
    if not 1 <= max_registers <= 125:
        raise ProfileError(file, "", "max_registers must be 1..125 (the Modbus limit)")
    return Profile(
        name=str(head["name"]),
        file=file,
        description=str(head.get("description", "")),
        points=points,
        merge_requests=bool(head.get("merge_requests", True)),
        max_gap=int(head.get("max_gap", 8)),
        max_registers=max_registers,
        sample_block=block,
    )


def load_profile(path: str | Path) -> Profile:
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ProfileError(file, "", "no such profile file") from err
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(file, "", f"not valid TOML: {err}") from err
    return parse_profile(data, file)


def load_profiles(folder: str | Path) -> dict[str, Profile]:
    """Every *.toml profile in `folder`, by profile name."""
    out: dict[str, Profile] = {}
    root = Path(folder)
    if not root.is_dir():
        raise ProfileError(
            str(folder), "", "profiles folder not found; set profiles_dir to a folder of *.toml"
        )
    for path in sorted(root.glob("*.toml")):
        profile = load_profile(path)
        if profile.name in out:
            raise ProfileError(
                str(path),
                "",
                f"profile name {profile.name!r} is also used by {out[profile.name].file}",
            )
        out[profile.name] = profile
    return out


def default_profiles_dir() -> Path:
    """config/profiles in the source tree (the repo root is three levels up)."""
    return Path(__file__).resolve().parents[3] / "config" / "profiles"
