"""Fakes and small builders shared by the whole suite (one module, not copies)."""

from __future__ import annotations

from gateway.streams import StreamRegistry


def numbered_registry(streams: int = 8, vehicles: int = 4) -> StreamRegistry:
    """A registry where stream id i is `test/s<i>/value` and vehicle id i is `BUS-<i>`,
    for batches built with plain integer ids."""
    registry = StreamRegistry()
    for i in range(streams):
        registry.register(f"test/s{i}/value", "u", "test")
    for i in range(vehicles):
        registry.vehicles.intern(f"BUS-{i}")
    return registry
