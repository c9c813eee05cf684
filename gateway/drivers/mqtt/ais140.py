"""Moved to gateway.drivers.ais140; these names stay until firmware_sim/buses/fleet.py
calls firmware_sim.ais140.encoder.gwsim_location and gateway.drivers.ais140.normalise_reg
(then delete this module)."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.drivers.ais140 import Profile, load_profiles, normalise_reg
from gateway.drivers.ais140.checksums import COMPUTE
from gateway.drivers.ais140.grammar import HEAD

__all__ = ["build_location", "load_profiles", "normalise_reg"]


def build_location(profile: Profile, values: Mapping[str, str]) -> bytes:
    """A location packet of a fixed profile from named values (missing ones empty)."""
    body = ",".join(values.get(name, "") for name in (*HEAD, *profile.tail)).encode("ascii")
    return b"$" + body + b"*" + COMPUTE[profile.checksum](body).encode("ascii")
