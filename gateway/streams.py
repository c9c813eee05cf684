"""Stream names interned to small integer ids, with their metadata.

A stream is one quantity of one asset, named `<asset>/<quantity>`, for example
`dma-07/inlet/flow_lps` (asset `dma-07/inlet`, quantity `flow_lps`) or
`bus/MH12-KQ-4321/coolant_c`. Batches carry the int32 id; the registry maps it
back to the name, unit, kind and asset. Ids are local to one gateway process;
the central database maps (gateway id, name) to a global id.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)+$")


class StreamNameError(ValueError):
    pass


def split_stream_name(name: str) -> tuple[str, str]:
    """Split `<asset>/<quantity>` into its asset and quantity, checking the form."""
    if not _NAME.match(name):
        raise StreamNameError(
            f"stream name {name!r} is not of the form <asset>/<quantity>, "
            "e.g. 'dma-07/inlet/flow_lps' (letters, digits, '_', '-', '.' between slashes)"
        )
    asset, _, quantity = name.rpartition("/")
    return asset, quantity


class Interner:
    """Names to dense int32 ids, in order of first sight."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = []

    def intern(self, name: str) -> int:
        found = self._ids.get(name)
        if found is not None:
            return found
        new = len(self._names)
        self._ids[name] = new
        self._names.append(name)
        return new

    def id_of(self, name: str) -> int:
        return self._ids[name]

    def name_of(self, ident: int) -> str:
        return self._names[ident]

    def names_of(self, ids: NDArray[np.int32]) -> NDArray[np.object_]:
        """Names for an array of ids (for output and tests, not the hot path)."""
        return np.asarray(self._names, dtype=object)[ids]

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)


@dataclasses.dataclass(frozen=True, slots=True)
class StreamInfo:
    id: int
    name: str
    unit: str
    kind: str  # what is measured: flow, pressure, volume, level, temperature, ...
    asset: str

    @property
    def quantity(self) -> str:
        return self.name.rpartition("/")[2]


class StreamRegistry:
    """Interns stream names and keeps their metadata.

    Registering a name twice returns the same id; registering it again with a
    different unit is an error, since two drivers disagreeing on a unit is a
    wiring mistake that would corrupt the stored series.
    """

    def __init__(self) -> None:
        self._interner = Interner()
        self._info: list[StreamInfo] = []
        self.vehicles = Interner()  # ids for FixBatch.vehicle

    def register(self, name: str, unit: str = "", kind: str = "") -> int:
        asset, _ = split_stream_name(name)
        if name in self._interner:
            info = self._info[self._interner.id_of(name)]
            if unit and info.unit and unit != info.unit:
                raise ValueError(
                    f"stream {name!r} is registered with unit {info.unit!r}, not {unit!r}; "
                    "give each stream one unit in the config"
                )
            return info.id
        ident = self._interner.intern(name)
        self._info.append(StreamInfo(ident, name, unit, kind, asset))
        return ident

    def info(self, ident: int) -> StreamInfo:
        return self._info[ident]

    def id_of(self, name: str) -> int:
        return self._interner.id_of(name)

    def name_of(self, ident: int) -> str:
        return self._interner.name_of(ident)

    def names_of(self, ids: NDArray[np.int32]) -> NDArray[np.object_]:
        return self._interner.names_of(ids)

    def __contains__(self, name: object) -> bool:
        return name in self._interner

    def __len__(self) -> int:
        return len(self._info)

    def __iter__(self) -> Iterator[StreamInfo]:
        return iter(self._info)
