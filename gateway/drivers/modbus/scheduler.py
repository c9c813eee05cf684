"""The poll scheduler: one lane per link, devices taking turns on it.

    serial line (rtu, rtu_over_tcp): one Lane, one link, all its devices in turn
    tcp line: one Lane per device, each with its own connection, run concurrently

    Lane.run():  pick the device due soonest -> wait for it (a queued write wakes us)
                 -> run queued writes -> poll: one transaction per planned request,
                 each with timeout and retries -> decode -> on_result(device, readings, events)

One request is outstanding per lane at any time, so an RS-485 line carries one
frame at a time and a write (fc 5, 6, 15, 16) waits behind the current request,
never interleaved. A device that fails keeps its interval once, then backs off
exponentially (backoff_initial, doubling, up to backoff_max), so a dead meter
costs its neighbours one timeout per backoff period instead of one per poll.

    DevicePoll(settings, profile, meter, timeout, retries)
    Lane(name, link, devices, *, char_bits=0, baudrate=0, inter_frame_delay=0.0,
         late_reply_guard=0.0, backoff_initial=2.0, backoff_max=60.0, on_result)

On a serial line a timed-out device may still answer. RTU frames carry no
transaction id, and its late reply would be taken for the answer to the next
request (the retry, or other registers): after a timeout the lane keeps
listening for `late_reply_guard` seconds and drops what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import numpy as np

from gateway.batch import NS_PER_S, Quality, ReadingBatch
from gateway.drivers.modbus.meters import MeterState
from gateway.drivers.modbus.plan import Request, plan_requests
from gateway.drivers.modbus.profiles import Profile, SampleBlock
from gateway.drivers.modbus.registers import Decoder, decode, decode_string, decoder
from gateway.drivers.modbus.settings import DeviceSettings
from gateway.drivers.modbus.transport import DeviceException, DeviceTimeout, LinkError, ModbusLink
from gateway.events import Event
from gateway.logs import get_logger

log = get_logger("gateway.modbus")

OnResult = Callable[["DevicePoll", ReadingBatch, Sequence[Event]], Awaitable[None]]
T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class DevicePoll:
    """A device's plan and its running state (mutable: owned by one lane)."""

    settings: DeviceSettings
    profile: Profile
    meter: MeterState
    timeout: float
    retries: int
    requests: tuple[Request, ...] = ()
    info_requests: tuple[Request, ...] = ()
    info: dict[str, str | float] = dataclasses.field(default_factory=dict)
    slots: list[list[tuple[int, int, Decoder]]] = dataclasses.field(default_factory=list)
    block_stream: int = -1
    state: str = "unknown"  # unknown, up, or the failure: timeout, bad_frame, exception...
    failures: int = 0
    next_due: float = 0.0
    polls: int = 0
    failed_polls: int = 0
    poll_s: float = 0.0  # wall time of the polls (requests, retries and guard), summed
    last_error: str = ""
    last_seq: int | None = None
    silent: bool = False  # timed out and sent nothing late either: no late-reply guard
    samples: int = 0
    sample_gaps: int = 0
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def __post_init__(self) -> None:
        s = self.settings
        merge = self.profile.merge_requests if s.merge_requests is None else s.merge_requests
        gap = self.profile.max_gap if s.max_gap is None else s.max_gap
        limit = self.profile.max_registers
        polled = [p for p in self.profile.points if p.role != "info"]
        info = [p for p in self.profile.points if p.role == "info"]
        self.requests = plan_requests(polled, merge=merge, max_gap=gap, max_registers=limit)
        # nameplate points (serial number, firmware) are read when the device comes up
        self.info_requests = plan_requests(info, merge=merge, max_gap=gap, max_registers=limit)
        self.rng = random.Random(s.name)
        # per request: (index in the meter's values, offset in the reply, its decoder)
        at = {p.name: i for i, p in enumerate(self.meter.points)}
        self.slots = [
            [(at[p.name], p.address - r.address, decoder(p)) for p in r.points if p.name in at]
            for r in self.requests
        ]

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def up(self) -> bool:
        return self.state == "up"


@dataclasses.dataclass(frozen=True, slots=True)
class WriteJob:
    device: str
    fc: int
    address: int
    values: tuple[int, ...]
    done: asyncio.Future[None]


class Lane:
    def __init__(
        self,
        name: str,
        link: ModbusLink,
        devices: Sequence[DevicePoll],
        *,
        on_result: OnResult,
        char_bits: int = 0,
        baudrate: int = 0,
        inter_frame_delay: float = 0.0,
        late_reply_guard: float = 0.0,
        backoff_initial: float = 2.0,
        backoff_max: float = 60.0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.name = name
        self.clock = clock  # ns UTC stamped on each poll; a simulator passes its own time
        self.link = link
        self.devices = list(devices)
        self.on_result = on_result
        self.char_bits = char_bits
        self.baudrate = baudrate
        self.inter_frame_delay = inter_frame_delay
        self.late_reply_guard = late_reply_guard
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.writes: asyncio.Queue[WriteJob] = asyncio.Queue()
        self._wake = asyncio.Event()
        self.transactions = 0
        self.busy_s = 0.0  # wall time with a request outstanding
        self.frame_s = 0.0  # wire time of the frames (serial lines), from byte counts
        self._since = time.monotonic()
        self._mark = (0.0, 0.0)

    def utilisation(self) -> float:
        """Share of line time spent on frames since the last call (serial lines,
        from byte counts and the baud rate), or busy with a request (tcp)."""
        now = time.monotonic()
        used = self.frame_s if self.baudrate else self.busy_s
        elapsed = now - self._since
        share = (used - self._mark[0]) / elapsed if elapsed > 0 else 0.0
        self._since, self._mark = now, (used, 0.0)
        return min(1.0, max(0.0, share))

    async def submit_write(self, device: str, fc: int, address: int, values: Sequence[int]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.writes.put(WriteJob(device, fc, address, tuple(values), done))
        self._wake.set()
        await done

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for dev in self.devices:
            # spread the first polls over the jitter window so devices do not all fire at once
            dev.next_due = now + dev.rng.uniform(0, max(dev.settings.jitter, 0.05)) * min(
                dev.settings.interval, 1.0
            )
        task = asyncio.current_task()
        try:
            while True:
                # pymodbus waits for replies with asyncio.wait_for, which on Python 3.11
                # swallows a cancel that lands as the reply arrives: honour it here
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError
                await self._run_writes()
                dev = min(self.devices, key=lambda d: d.next_due)
                delay = dev.next_due - loop.time()
                if delay > 0:
                    self._wake.clear()
                    if self.writes.empty():
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay):
                                await self._wake.wait()
                    continue
                await self._poll(dev)
        finally:
            self.link.close()

    async def _run_writes(self) -> None:
        while not self.writes.empty():
            job = self.writes.get_nowait()
            dev = next(d for d in self.devices if d.name == job.device)
            try:
                call = functools.partial(
                    self.link.write,
                    job.fc,
                    job.address,
                    job.values,
                    dev.settings.unit_id,
                    dev.timeout,
                )
                await self._transact(call, dev)
            except LinkError as err:
                log.warning("write.failed", device=dev.name, fc=job.fc, error=str(err))
                job.done.set_exception(err)
            else:
                job.done.set_result(None)

    async def _transact(self, call: Callable[[], Awaitable[T]], dev: DevicePoll) -> T:
        """One request with the device's retries. A Modbus exception is an
        answer, so it is not retried; neither is a link that cannot connect."""
        attempt = 0
        while True:
            tx0, rx0 = self.link.tx_bytes, self.link.rx_bytes
            start = time.monotonic()
            try:
                return await call()
            except DeviceException:
                raise
            except LinkError as err:
                if isinstance(err, DeviceTimeout) and self.late_reply_guard and not dev.silent:
                    await asyncio.sleep(self.late_reply_guard)
                    # nothing came: a dead meter, not a slow one; spare the line until it answers
                    dev.silent = not self.link.rx_seen
                    self.link.rx_seen = b""
                if attempt >= dev.retries or err.state == "link_down":
                    raise
                attempt += 1
            finally:
                self.transactions += 1
                self.busy_s += time.monotonic() - start
                if self.baudrate:
                    chars = (self.link.tx_bytes - tx0) + (self.link.rx_bytes - rx0)
                    # each frame is followed by 3.5 characters of silence
                    self.frame_s += (chars + 7) * self.char_bits / self.baudrate
                if self.inter_frame_delay:
                    await asyncio.sleep(self.inter_frame_delay)

    async def _poll(self, dev: DevicePoll) -> None:
        started = time.monotonic()
        try:
            await self._poll_once(dev)
        finally:
            dev.poll_s += time.monotonic() - started

    async def _poll_once(self, dev: DevicePoll) -> None:
        loop = asyncio.get_running_loop()
        ts = self.clock()
        unit = dev.settings.unit_id
        try:
            regs: list[list[int]] = []
            for req in dev.requests:
                read = functools.partial(
                    self.link.read, req.fc, req.address, req.count, unit, dev.timeout
                )
                regs.append(await self._transact(read, dev))
            block = dev.profile.sample_block
            samples = None
            if block is not None:
                start, count = _block_span(block)
                read = functools.partial(self.link.read, block.fc, start, count, unit, dev.timeout)
                raw = await self._transact(read, dev)
                samples = self._samples(dev, block, raw, ts)
        except LinkError as err:
            dev.failures += 1
            dev.polls += 1
            dev.failed_polls += 1
            dev.last_error = str(err)
            if dev.state != err.state:
                log.warning(
                    "device.down",
                    device=dev.name,
                    lane=self.name,
                    address=self.link.address,
                    unit=unit,
                    state=err.state,
                    error=str(err),
                    quality=Quality.describe(err.quality),
                )
                dev.state = err.state
            dev.next_due = loop.time() + self._retry_delay(dev)
            await self.on_result(dev, dev.meter.failed(ts, err.quality), ())
            return
        values = [0.0] * len(dev.meter.points)
        for got, slots in zip(regs, dev.slots, strict=True):
            for i, off, decode_at in slots:
                values[i] = decode_at(got, off)
        readings, events = dev.meter.good(ts, values)
        if samples is not None:
            readings = ReadingBatch.concat([readings, samples])
        dev.silent = False
        if dev.state != "up":
            log.info("device.up", device=dev.name, lane=self.name, after_failures=dev.failures)
            dev.state = "up"
            await self._read_info(dev)
        dev.failures = 0
        dev.polls += 1
        interval = dev.settings.interval
        step = interval * (1 + dev.rng.uniform(-0.5, 0.5) * dev.settings.jitter)
        dev.next_due = max(dev.next_due + step, loop.time())
        await self.on_result(dev, readings, events)

    async def _read_info(self, dev: DevicePoll) -> None:
        """Read the nameplate points once; a failure here only leaves them unknown."""
        unit = dev.settings.unit_id
        for req in dev.info_requests:
            read = functools.partial(
                self.link.read, req.fc, req.address, req.count, unit, dev.timeout
            )
            try:
                got = await self._transact(read, dev)
            except LinkError as err:
                log.warning("device.info_failed", device=dev.name, error=str(err))
                return
            for p in req.points:
                off = p.address - req.address
                regs = got[off : off + p.width]
                dev.info[p.name] = decode_string(p, regs) if p.type == "string" else decode(p, regs)
        if dev.info:
            log.info("device.info", device=dev.name, **dev.info)

    def _retry_delay(self, dev: DevicePoll) -> float:
        interval = dev.settings.interval
        if dev.failures <= 1:
            return interval
        backoff = min(self.backoff_max, self.backoff_initial * 2.0 ** (dev.failures - 2))
        return max(interval, backoff * (1 + dev.rng.uniform(0, 0.1)))

    def _samples(
        self, dev: DevicePoll, block: SampleBlock, raw: list[int], ts: int
    ) -> ReadingBatch:
        start, _ = _block_span(block)
        s = block.seq_address - start
        seq = (raw[s] << 16) | raw[s + 1]
        d = block.data_address - start
        data = np.asarray(raw[d : d + block.size], np.int64)
        if block.type == "int16":
            data = np.where(data >= 0x8000, data - 0x10000, data)
        if dev.last_seq is None:
            new = min(seq, block.size)
        else:
            new = (seq - dev.last_seq) % (1 << 32)
            if new > block.size:
                dev.sample_gaps += new - block.size
                log.warning("samples.gap", device=dev.name, lost=new - block.size)
                new = block.size
        dev.last_seq = seq
        dev.samples += new
        period = round(NS_PER_S / block.rate_hz)
        vals = data[block.size - new :].astype(np.float64) * block.scale + block.offset
        stamps = ts - period * np.arange(new - 1, -1, -1, dtype=np.int64)
        ids = np.full(new, dev.block_stream, np.int32)
        return ReadingBatch(stamps, ids, vals, np.zeros(new, np.uint8))


def _block_span(block: SampleBlock) -> tuple[int, int]:
    start = min(block.seq_address, block.data_address)
    end = max(block.seq_address + 2, block.data_address + block.size)
    return start, end - start
