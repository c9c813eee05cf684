"""Settings of the Modbus driver: lines, the devices on them, and their profiles.

The TOML form (see README.md in this folder, kept true by a test):

    [modbus]
    profiles_dir = "config/profiles"

    [[modbus.lines]]
    name = "rs485-1"
    kind = "rtu"                    # tcp | rtu | rtu_over_tcp
    port = "/dev/ttyUSB0"
    baudrate = 19200

    [[modbus.devices]]
    name = "dma-01/inlet"           # the asset: streams are <name>/<point>
    line = "rs485-1"
    unit_id = 1
    profile = "emf-flow-meter"
    interval = 1.0

Constructors (all frozen, slotted, with defaults):

    LineSettings(name, kind="tcp", host="127.0.0.1", tcp_port=502, port="", baudrate=9600,
                 parity="N", bytesize=8, stopbits=1, timeout=1.0, retries=1,
                 inter_frame_delay=0.0, late_reply_guard=0.2)
    DeviceSettings(name, line, profile, unit_id=1, interval=1.0, jitter=0.1, host="",
                   tcp_port=0, timeout=None, retries=None, merge_requests=None, max_gap=None,
                   enabled=True)
    ModbusSettings(profiles_dir="config/profiles", lines=(), devices=(), backoff_initial=2.0,
                   backoff_max=60.0, flush_interval=0.1, flush_rows=10_000)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

LineKind = Literal["tcp", "rtu", "rtu_over_tcp"]
Parity = Literal["N", "E", "O"]


@dataclasses.dataclass(frozen=True, slots=True)
class LineSettings:
    """One physical or logical line. A `tcp` line is a set of TCP devices polled
    concurrently (one connection each); `rtu` and `rtu_over_tcp` lines carry one
    request at a time for all the devices on them."""

    name: str = dataclasses.field(metadata={"help": "unique line name, e.g. rs485-1"})
    kind: LineKind = "tcp"
    host: str = dataclasses.field(
        default="127.0.0.1", metadata={"help": "default host for tcp devices; the converter's host"}
    )
    tcp_port: int = dataclasses.field(
        default=502, metadata={"help": "default TCP port; the converter's port for rtu_over_tcp"}
    )
    port: str = dataclasses.field(default="", metadata={"help": "serial port, e.g. /dev/ttyUSB0"})
    baudrate: int = 9600
    parity: Parity = "N"
    bytesize: Literal[7, 8] = 8
    stopbits: Literal[1, 2] = 1
    timeout: float = dataclasses.field(
        default=1.0, metadata={"help": "seconds to wait for one reply"}
    )
    retries: int = dataclasses.field(
        default=1, metadata={"help": "extra attempts before a poll counts as failed"}
    )
    inter_frame_delay: float = dataclasses.field(
        default=0.0, metadata={"help": "extra silence (s) between transactions on the line"}
    )
    late_reply_guard: float = dataclasses.field(
        default=0.2,
        metadata={
            "help": "seconds to keep listening after a timeout on a serial line, so a slow "
            "meter's late reply is dropped instead of landing in the next exchange"
        },
    )

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a line needs a name")
        if self.kind == "rtu" and not self.port:
            raise ValueError(f'line {self.name!r} is rtu: set port = "/dev/ttyUSB0" (or similar)')
        if self.baudrate <= 0:
            raise ValueError(f"line {self.name!r}: baudrate must be positive, e.g. 9600")
        if (
            self.timeout <= 0
            or self.retries < 0
            or min(self.inter_frame_delay, self.late_reply_guard) < 0
        ):
            raise ValueError(
                f"line {self.name!r}: timeout must be > 0; retries, inter_frame_delay and "
                "late_reply_guard >= 0"
            )

    def char_bits(self) -> int:
        """Bits per character on the wire: start + data + parity + stop."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSettings:
    """One meter. Per-device values left as None take the line's or the profile's."""

    name: str = dataclasses.field(
        metadata={"help": "asset name; streams are <name>/<point>, e.g. dma-01/inlet"}
    )
    line: str = dataclasses.field(metadata={"help": "name of the line the device is on"})
    profile: str = dataclasses.field(metadata={"help": "profile name (config/profiles/*.toml)"})
    unit_id: int = 1
    interval: float = dataclasses.field(default=1.0, metadata={"help": "poll interval (s)"})
    jitter: float = dataclasses.field(
        default=0.1, metadata={"help": "fraction of the interval to spread polls by"}
    )
    host: str = dataclasses.field(default="", metadata={"help": "tcp devices: host (else line's)"})
    tcp_port: int = dataclasses.field(
        default=0, metadata={"help": "tcp devices: port (0 takes the line's)"}
    )
    timeout: float | None = None
    retries: int | None = None
    merge_requests: bool | None = dataclasses.field(
        default=None, metadata={"help": "false for a device that rejects large reads"}
    )
    max_gap: int | None = dataclasses.field(
        default=None, metadata={"help": "registers a merged read may skip over"}
    )
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.unit_id <= 247:
            raise ValueError(f"device {self.name!r}: unit_id must be 0..247, got {self.unit_id}")
        if self.interval <= 0:
            raise ValueError(f"device {self.name!r}: interval must be > 0 seconds, e.g. 1.0")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"device {self.name!r}: jitter is a fraction in [0, 1), e.g. 0.1")


@dataclasses.dataclass(frozen=True, slots=True)
class ModbusSettings:
    profiles_dir: str = dataclasses.field(
        default="config/profiles", metadata={"help": "folder of meter profiles (*.toml)"}
    )
    lines: tuple[LineSettings, ...] = ()
    devices: tuple[DeviceSettings, ...] = ()
    backoff_initial: float = dataclasses.field(
        default=2.0, metadata={"help": "first retry delay (s) for a device that stays dead"}
    )
    backoff_max: float = dataclasses.field(
        default=60.0, metadata={"help": "longest retry delay (s) for a dead device"}
    )
    flush_interval: float = dataclasses.field(
        default=0.1, metadata={"help": "emit gathered polls every this many s (0: each poll)"}
    )
    flush_rows: int = dataclasses.field(
        default=10_000, metadata={"help": "... or as soon as this many readings wait"}
    )

    def __post_init__(self) -> None:
        lines = [line.name for line in self.lines]
        if len(set(lines)) != len(lines):
            raise ValueError(f"line names must be unique, got {lines}")
        names = [d.name for d in self.devices]
        if len(set(names)) != len(names):
            raise ValueError(f"device names must be unique, got {names}")
        for dev in self.devices:
            if dev.line not in lines:
                raise ValueError(
                    f"device {dev.name!r} is on line {dev.line!r}, which is not defined; "
                    f"known lines: {lines or 'none'} (add a [[modbus.lines]] table)"
                )
        serial_units: set[tuple[str, int]] = set()
        kinds = {line.name: line.kind for line in self.lines}
        for dev in self.devices:
            if kinds[dev.line] != "tcp":
                key = (dev.line, dev.unit_id)
                if key in serial_units:
                    raise ValueError(
                        f"two devices on line {dev.line!r} share unit_id {dev.unit_id}"
                    )
                serial_units.add(key)
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_initial must be > 0 and backoff_max >= backoff_initial")
        if self.flush_interval < 0 or self.flush_rows < 1:
            raise ValueError("flush_interval must be >= 0 s and flush_rows >= 1")

    def line(self, name: str) -> LineSettings:
        for line in self.lines:
            if line.name == name:
                return line
        raise KeyError(name)
