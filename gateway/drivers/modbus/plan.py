"""Request planning: which reads fetch a device's points.

Points of one function code that sit close together are read in one request,
so that a meter with ten points costs one or two transactions, not ten:

    points (fc 4: 0-1, 2-3, 10-11; fc 3: 100)  --plan_requests(max_gap=8)-->
        Request(fc=4, address=0, count=12)  Request(fc=3, address=100, count=1)

A request never exceeds `max_registers` (125 registers, the Modbus limit for
fc 3/4; 2000 bits for fc 1/2) and never skips a gap wider than `max_gap`.
`merge=False` reads each point alone, for a device that rejects large reads.

    plan_requests(points, *, merge=True, max_gap=8, max_registers=125) -> tuple[Request, ...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from gateway.drivers.modbus.profiles import Point

MAX_BITS = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    fc: int
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def describe(self) -> str:
        names = ",".join(p.name for p in self.points)
        return f"fc={self.fc} address={self.address} count={self.count} points={names}"


def plan_requests(
    points: Iterable[Point],
    *,
    merge: bool = True,
    max_gap: int = 8,
    max_registers: int = 125,
) -> tuple[Request, ...]:
    if max_gap < 0 or not 1 <= max_registers <= 125:
        raise ValueError("max_gap must be >= 0 and max_registers 1..125")
    out: list[Request] = []
    by_fc: dict[int, list[Point]] = {}
    for p in points:
        by_fc.setdefault(p.fc, []).append(p)
    for fc in sorted(by_fc):
        ordered = sorted(by_fc[fc], key=lambda p: (p.address, p.bit))
        limit = MAX_BITS if fc in (1, 2) else max_registers
        group: list[Point] = []
        start = end = 0
        for p in ordered:
            shares = p.address < end  # bits of a register already read ride along
            near = merge and p.address - end <= max_gap
            if group and (shares or near) and max(end, p.end) - start <= limit:
                group.append(p)
                end = max(end, p.end)
                continue
            if group:
                out.append(Request(fc, start, end - start, tuple(group)))
            if p.width > limit:
                raise ValueError(f"point {p.name!r} is wider than {limit} registers")
            group, start, end = [p], p.address, p.end
        if group:
            out.append(Request(fc, start, end - start, tuple(group)))
    return tuple(out)
