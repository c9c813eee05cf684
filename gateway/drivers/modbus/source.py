"""ModbusSource: polls the configured meters and emits bundles of readings.

    ModbusSettings --> ModbusSource(settings, registry)
                          |  run(emit): one TaskGroup, one Lane task per serial line
                          |  and per TCP device
                          v
          Bundle(readings=ReadingBatch, events=(Event...)) --emit--> pipeline

Streams are registered in the StreamRegistry when the source is built, so the
registry knows every name, unit and kind before the first poll. Polls are gathered and
emitted as one bundle every `flush_interval` seconds (or `flush_rows` rows),
so the pipeline sees a few bundles a second, not one per poll. A device that
does not answer never raises out of `run`: its readings are NaN with
COMM_ERROR/TIMEOUT (or CRC, exception) quality, it is logged once per change
of state, and the other devices keep their rate.

    ModbusSource(settings: ModbusSettings, registry: StreamRegistry, *,
                 profiles: Mapping[str, Profile] | None = None, name: str = "modbus",
                 clock: Callable[[], int] = time.time_ns)
        .devices_total -> int           .devices_up() -> int
        .status() -> list[DeviceStatus] .utilisation() -> dict[str, float]
        await .write(device, fc, address, values)   # fc 5, 6, 15, 16, queued on the line
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from gateway.batch import ReadingBatch
from gateway.bundle import Bundle
from gateway.drivers.modbus.meters import MeterState
from gateway.drivers.modbus.profiles import (
    Profile,
    ProfileError,
    default_profiles_dir,
    load_profiles,
)
from gateway.drivers.modbus.scheduler import DevicePoll, Lane
from gateway.drivers.modbus.settings import LineSettings, ModbusSettings
from gateway.drivers.modbus.transport import open_link
from gateway.events import Event
from gateway.metrics import Measurement
from gateway.parts import Emit, Wiring
from gateway.streams import StreamRegistry


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceStatus:
    name: str
    line: str
    state: str  # unknown, up, timeout, bad_frame, exception, link_down
    polls: int
    failed_polls: int
    last_error: str
    samples: int = 0
    sample_gaps: int = 0
    info: Mapping[str, str | float] = dataclasses.field(default_factory=dict)


DEFAULT_PROFILES_DIR = "config/profiles"


def resolve_profiles_dir(configured: str) -> Path:
    """The configured folder. The default, `config/profiles`, is looked up in the
    source tree when the working directory has none (`gateway demo` from anywhere);
    any other folder must exist, or loading the profiles says so."""
    path = Path(configured)
    if path.is_dir() or configured != DEFAULT_PROFILES_DIR:
        return path
    return default_profiles_dir()


class ModbusSource:
    def __init__(
        self,
        settings: ModbusSettings,
        registry: StreamRegistry,
        *,
        profiles: Mapping[str, Profile] | None = None,
        name: str = "modbus",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.name = name
        self.clock = clock  # the time stamped on readings; the device's own when it is trusted
        self.settings = settings
        self.registry = registry
        if profiles is None:
            profiles = load_profiles(resolve_profiles_dir(settings.profiles_dir))
        self.profiles = dict(profiles)
        self.polls: list[DevicePoll] = []
        for dev in settings.devices:
            if not dev.enabled:
                continue
            profile = self.profiles.get(dev.profile)
            if profile is None:
                raise ProfileError(
                    settings.profiles_dir,
                    "",
                    f"device {dev.name!r} names profile {dev.profile!r}, which is not there; "
                    f"known profiles: {sorted(self.profiles) or 'none'}",
                )
            line = settings.line(dev.line)
            poll = DevicePoll(
                settings=dev,
                profile=profile,
                meter=MeterState(dev.name, profile, registry),
                timeout=dev.timeout if dev.timeout is not None else line.timeout,
                retries=dev.retries if dev.retries is not None else line.retries,
            )
            block = profile.sample_block
            if block is not None:
                poll.block_stream = registry.register(
                    f"{dev.name}/{block.name}", block.unit, block.kind
                )
            self.polls.append(poll)
        self.lanes: list[Lane] = []
        self._emit: Emit | None = None
        self._readings: list[ReadingBatch] = []
        self._events: list[Event] = []
        self._pending_rows = 0

    @classmethod
    def create(cls, name: str, settings: ModbusSettings, wiring: Wiring) -> ModbusSource:
        """Loads and checks the profiles now: a missing one stops the start."""
        return cls(settings, wiring.registry, name=name)

    @property
    def devices_total(self) -> int:
        return len(self.polls)

    def devices_up(self) -> int:
        return sum(1 for p in self.polls if p.up)

    def status(self) -> list[DeviceStatus]:
        return [
            DeviceStatus(
                p.name,
                p.settings.line,
                p.state,
                p.polls,
                p.failed_polls,
                p.last_error,
                p.samples,
                p.sample_gaps,
                dict(p.info),
            )
            for p in self.polls
        ]

    def measurements(self) -> Iterator[Measurement]:
        """Device state and poll latency per device, line time per lane; a line's
        utilisation is the rate of `modbus_line_busy_seconds_total`."""
        for p in self.polls:
            labels = (("source", self.name), ("device", p.name), ("line", p.settings.line))
            yield Measurement("modbus_device_up", float(p.up), "1 while the device answers",
                              labels=labels)  # fmt: skip
            yield Measurement("modbus_polls_total", p.polls, "polls", "counter", labels)
            yield Measurement(
                "modbus_failed_polls_total", p.failed_polls, "polls that failed", "counter", labels
            )
            yield Measurement(
                "modbus_poll_seconds_total", p.poll_s, "wall time of the polls", "counter", labels
            )
        for lane in self.lanes:
            lane_labels = (("source", self.name), ("lane", lane.name))
            busy = lane.frame_s if lane.baudrate else lane.busy_s
            yield Measurement(
                "modbus_line_busy_seconds_total",
                busy,
                "time on frames (serial) or with a request outstanding (tcp)",
                "counter",
                lane_labels,
            )
            yield Measurement(
                "modbus_transactions_total",
                lane.transactions,
                "requests sent",
                "counter",
                lane_labels,
            )

    def utilisation(self) -> dict[str, float]:
        """Per lane: share of line time on frames since the last call."""
        return {lane.name: lane.utilisation() for lane in self.lanes}

    def _lanes(self) -> list[Lane]:
        lanes: list[Lane] = []
        s = self.settings
        for line in s.lines:
            polls = [p for p in self.polls if p.settings.line == line.name]
            if not polls:
                continue
            if line.kind == "tcp":
                for p in polls:
                    link = open_link(
                        "tcp",
                        host=p.settings.host or line.host,
                        port=p.settings.tcp_port or line.tcp_port,
                        timeout=p.timeout,
                    )
                    lanes.append(self._lane(f"{line.name}:{p.name}", link, [p], line))
            else:
                link = open_link(
                    line.kind,
                    host=line.host,
                    port=line.tcp_port,
                    serial_port=line.port,
                    baudrate=line.baudrate,
                    parity=line.parity,
                    bytesize=line.bytesize,
                    stopbits=line.stopbits,
                    timeout=line.timeout,
                )
                lanes.append(self._lane(line.name, link, polls, line))
        return lanes

    def _lane(
        self, name: str, link: object, polls: Sequence[DevicePoll], line: LineSettings
    ) -> Lane:
        serial = line.kind != "tcp"
        return Lane(
            name,
            link,  # type: ignore[arg-type]
            polls,
            on_result=self._on_result,
            char_bits=line.char_bits() if serial else 0,
            baudrate=line.baudrate if serial else 0,
            inter_frame_delay=line.inter_frame_delay if serial else 0.0,
            late_reply_guard=line.late_reply_guard if serial else 0.0,
            backoff_initial=self.settings.backoff_initial,
            backoff_max=self.settings.backoff_max,
            clock=self.clock,
        )

    async def _on_result(
        self, poll: DevicePoll, readings: ReadingBatch, events: Sequence[Event]
    ) -> None:
        if self.settings.flush_interval <= 0:
            if self._emit is not None:
                await self._emit(Bundle(readings=readings, events=tuple(events)))
            return
        self._readings.append(readings)
        self._events.extend(events)
        self._pending_rows += len(readings)
        if self._pending_rows >= self.settings.flush_rows:
            await self._flush()

    async def _flush(self) -> None:
        if not (self._readings or self._events) or self._emit is None:
            return
        readings, events = ReadingBatch.concat(self._readings), tuple(self._events)
        self._readings, self._events, self._pending_rows = [], [], 0
        await self._emit(Bundle(readings=readings, events=events))

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            await self._flush()

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        self.lanes = self._lanes()
        try:
            async with asyncio.TaskGroup() as tg:
                if self.settings.flush_interval > 0:
                    tg.create_task(self._flusher(), name="modbus-flush")
                for lane in self.lanes:
                    tg.create_task(lane.run(), name=f"modbus-lane:{lane.name}")
        finally:
            for lane in self.lanes:
                lane.link.close()
            # hand over what was read before the stop, so the drain writes it
            await self._flush()

    async def write(self, device: str, fc: int, address: int, values: Sequence[int]) -> None:
        """Write on the device's line, behind the request in flight (never interleaved)."""
        for lane in self.lanes:
            if any(p.name == device for p in lane.devices):
                await lane.submit_write(device, fc, address, values)
                return
        raise KeyError(f"no running device {device!r}")
