"""Ais140SourceSettings: the `[ais140]` table of the gateway config (README.md)."""

from __future__ import annotations

import dataclasses
import re
from typing import Final

_IMEI: Final = re.compile(r"\d{15}")


@dataclasses.dataclass(frozen=True, slots=True)
class Ais140SourceSettings:
    host: str = dataclasses.field(
        default="0.0.0.0", metadata={"help": "address to listen on for the units"}
    )
    port: int = dataclasses.field(
        default=5027, metadata={"help": "TCP port; 0 lets the system choose (tests)"}
    )
    udp_port: int = dataclasses.field(
        default=-1, metadata={"help": "UDP port for vendors that send datagrams; -1 = off"}
    )
    vehicles: dict[str, str] = dataclasses.field(
        default_factory=dict,
        metadata={"help": "IMEI -> vehicle id (MH12-KQ-4321); a unit not listed is refused"},
    )
    profiles: str = dataclasses.field(
        default="", metadata={"help": "vendor profiles TOML; default the built-in file"}
    )
    max_connections: int = dataclasses.field(
        default=4000, metadata={"help": "connections beyond this are closed at once"}
    )
    idle_timeout_s: float = dataclasses.field(
        default=600.0, metadata={"help": "close a connection silent this long (half-open)"}
    )
    frame_linger_s: float = dataclasses.field(
        default=0.3,
        metadata={"help": "after this much silence a held packet with no terminator is read"},
    )
    max_frame_bytes: int = dataclasses.field(
        default=1024, metadata={"help": "longest packet; longer is refused (oversized, no_end)"}
    )
    max_bytes_per_s: float = dataclasses.field(
        default=16_384.0, metadata={"help": "per connection; reading pauses beyond it"}
    )
    max_packets_per_s: float = dataclasses.field(
        default=20.0,
        metadata={"help": "per connection; packets beyond it are refused (emergencies never)"},
    )
    burst_s: float = dataclasses.field(
        default=5.0, metadata={"help": "the rate limits allow bursts of this many seconds"}
    )
    max_bad_frames: int = dataclasses.field(
        default=20,
        metadata={"help": "disconnect a unit after this many bad frames in a row"},
    )
    flush_packets: int = dataclasses.field(
        default=2000, metadata={"help": "emit a bundle after this many packets"}
    )
    flush_ms: int = dataclasses.field(
        default=250, metadata={"help": "or after this long (an emergency goes out at once)"}
    )
    max_future_s: float = dataclasses.field(
        default=300.0, metadata={"help": "refuse timestamps further ahead of our clock"}
    )
    history_window_s: float = dataclasses.field(
        default=7 * 86_400.0, metadata={"help": "refuse buffered data older than this"}
    )
    max_rejects_per_flush: int = 1000

    def __post_init__(self) -> None:
        bad = sorted(imei for imei in self.vehicles if not _IMEI.fullmatch(imei))
        if bad:
            raise ValueError(f"vehicles: {bad[:3]} are not 15-digit IMEIs")
        if not 0 <= self.port <= 65535 or not -1 <= self.udp_port <= 65535:
            raise ValueError("port must be 0-65535 and udp_port -1 (off) or 0-65535")
        if self.max_connections < 1 or self.max_bad_frames < 1:
            raise ValueError("max_connections and max_bad_frames must be at least 1")
        if self.idle_timeout_s <= 0 or self.frame_linger_s <= 0:
            raise ValueError("idle_timeout_s and frame_linger_s must be more than 0")
        if self.max_frame_bytes < 64:
            raise ValueError("max_frame_bytes must be at least 64")
        if min(self.max_bytes_per_s, self.max_packets_per_s, self.burst_s) <= 0:
            raise ValueError("max_bytes_per_s, max_packets_per_s and burst_s must be more than 0")
        if self.flush_packets < 1 or self.flush_ms < 1:
            raise ValueError("flush_packets and flush_ms must be at least 1")
