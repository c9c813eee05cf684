"""Vendor profiles: how each vendor's packets differ, loaded from profiles.toml.

A profile says which vendor ids it covers, whether its fields are read by position
(`fixed`, the layouts whose every field is known) or around the position fix
(`anchored`, for the vendors seen in the field), its checksum, the names of the
fields after the standard ones, and the replies its units expect.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from gateway.drivers.ais140.checksums import ALGORITHMS, PLACES, SPANS, Algorithm, Place, Span

PROFILES_PATH: Final = Path(__file__).with_name("profiles.toml")
GENERIC: Final = "generic"

Layout = Literal["fixed", "anchored"]
OnMismatch = Literal["reject", "keep"]


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    name: str
    vendors: tuple[str, ...]
    layout: Layout = "fixed"
    checksum: Algorithm = "unknown"
    checksum_at: Place = "after_star"
    checksum_span: Span = "body"
    on_mismatch: OnMismatch = "reject"
    location_headers: tuple[str, ...] = ()
    tail: tuple[str, ...] = ()
    tail_by_firmware: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    login_headers: tuple[str, ...] = ()
    login: tuple[str, ...] = ()
    heartbeat_headers: tuple[str, ...] = ()
    heartbeat: tuple[str, ...] = ()
    health_headers: tuple[str, ...] = ()
    health: tuple[str, ...] = ()
    ack_login: str = ""
    ack_heartbeat: str = ""
    utc_offset_minutes: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        where = f"profile {self.name}"
        if self.layout not in ("fixed", "anchored"):
            raise ValueError(f"{where}: layout must be fixed or anchored")
        if self.checksum not in ALGORITHMS:
            raise ValueError(f"{where}: checksum must be one of {', '.join(ALGORITHMS)}")
        if self.checksum_at not in PLACES or self.checksum_span not in SPANS:
            raise ValueError(f"{where}: checksum_at {PLACES}, checksum_span {SPANS}")
        if not -720 <= self.utc_offset_minutes <= 840:
            raise ValueError(f"{where}: utc_offset_minutes must be in [-720, 840] (IST: 330)")
        if self.on_mismatch not in ("reject", "keep"):
            raise ValueError(f"{where}: on_mismatch must be reject or keep")
        if self.layout == "fixed":
            if "frame_number" not in self.tail:
                raise ValueError(f"{where}: a fixed tail must name the frame_number field")
            if not self.location_headers:
                raise ValueError(f"{where}: a fixed layout needs location_headers")

    def tail_for(self, firmware: str) -> tuple[str, ...]:
        for prefix, names in self.tail_by_firmware.items():
            if firmware.startswith(prefix):
                return names
        return self.tail


_TUPLES: Final = (
    "vendors",
    "location_headers",
    "tail",
    "login_headers",
    "login",
    "heartbeat_headers",
    "heartbeat",
    "health_headers",
    "health",
)


def _profile(name: str, spec: Mapping[str, Any]) -> Profile:
    known = {f.name for f in dataclasses.fields(Profile)} - {"name"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    if "vendors" not in spec:
        raise ValueError("lacks key 'vendors' (use [] for the default profile)")
    values: dict[str, Any] = dict(spec)
    for key in _TUPLES:
        if key in values:
            values[key] = tuple(values[key])
    tails = values.get("tail_by_firmware", {})
    values["tail_by_firmware"] = {str(k): tuple(v) for k, v in tails.items()}
    return Profile(name=name, **values)


def load_profiles(path: Path = PROFILES_PATH) -> dict[str, Profile]:
    """The profiles in `path`; a ValueError names the file, the profile and the fix."""
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    profiles: dict[str, Profile] = {}
    for name, spec in raw.get("profiles", {}).items():
        if name == GENERIC:
            raise ValueError(f"{path}: the name {GENERIC!r} is the built-in fallback")
        try:
            profiles[name] = _profile(name, spec)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: profiles.{name}: {err}") from None
    defaults = [p.name for p in profiles.values() if not p.vendors]
    if len(defaults) != 1:
        raise ValueError(f"{path}: exactly one profile must have vendors = [] (the default)")
    seen: dict[str, str] = {}
    for profile in profiles.values():
        for vendor in profile.vendors:
            if vendor in seen:
                raise ValueError(
                    f"{path}: vendor id {vendor!r} is in profiles {seen[vendor]} and "
                    f"{profile.name}; keep it in one"
                )
            seen[vendor] = profile.name
    return profiles
