"""A simulated RS-485 wire between two pty pairs.

    pymodbus serial server --opens--> device_path (pty A slave)
                                      pty A master <--relay--> pty B master
    gateway serial client  --opens--> gateway_path (pty B slave)

A pty has no baud rate of its own, so the relay holds each chunk for its wire
time at `baudrate` (10 bits a character for 8N1) plus the 3.5-character silence
that ends an RTU frame. The wire is half duplex, like RS-485: one direction
waits for the other. `baudrate=0` relays at once. `cut()` makes the port the
gateway holds disappear, as when a USB adapter is pulled.

    PtyWire(baudrate: int = 0, char_bits: int = 10)
        await .start()  .device_path  .gateway_path  await .stop()  .cut()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty


def rtu_frame_length(data: bytes, *, to_device: bool) -> int | None:
    """The length of the RTU frame `data` starts, from its header; None while the
    header is incomplete or the function code is not one we know."""
    if len(data) < 2:
        return None
    fc = data[1]
    if to_device:
        if 1 <= fc <= 6:
            return 8
        if fc in (15, 16):
            return 9 + data[6] if len(data) >= 7 else None
        return None
    if fc & 0x80:
        return 5
    if 1 <= fc <= 4:
        return 5 + data[2] if len(data) >= 3 else None
    if fc in (5, 6, 15, 16):
        return 8
    return None


class PtyWire:
    def __init__(self, baudrate: int = 0, char_bits: int = 10) -> None:
        self.baudrate = baudrate
        self.char_bits = char_bits
        self.device_path = ""
        self.gateway_path = ""
        self._fds: list[int] = []
        self._masters: tuple[int, int] = (-1, -1)
        self._tasks: list[asyncio.Task[None]] = []
        self._free_at = 0.0  # loop time at which the wire is next idle
        self.bytes_relayed = 0

    async def start(self) -> None:
        dev_master, dev_slave = os.openpty()
        gw_master, gw_slave = os.openpty()
        for fd in (dev_slave, gw_slave):
            tty.setraw(fd)
        self.device_path = os.ttyname(dev_slave)
        self.gateway_path = os.ttyname(gw_slave)
        # keep the slaves open so the masters do not see EIO while nobody has them open
        self._fds = [dev_master, dev_slave, gw_master, gw_slave]
        self._masters = (dev_master, gw_master)
        for fd in (dev_master, gw_master):
            os.set_blocking(fd, False)
        self._tasks = [
            asyncio.create_task(
                self._relay(gw_master, dev_master, to_device=True), name="wire:to-device"
            ),
            asyncio.create_task(
                self._relay(dev_master, gw_master, to_device=False), name="wire:to-gateway"
            ),
        ]

    async def _read(self, fd: int) -> bytes:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""

    async def _relay(self, src: int, dst: int, *, to_device: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self._read(src)
            except OSError:
                return
            if not data:
                continue
            if self.baudrate:
                # the frame occupies the wire from its first byte: gather the rest
                # as it arrives, until its length says it is whole (or, for bytes
                # that parse as no frame, until 3.5 characters of silence)
                first = loop.time()
                gap = max(0.0015, 3.5 * self.char_bits / self.baudrate)
                while (need := rtu_frame_length(data, to_device=to_device)) is None or len(
                    data
                ) < need:
                    try:
                        async with asyncio.timeout(gap):
                            more = await self._read(src)
                    except TimeoutError:
                        break
                    data += more
                wire = (len(data) + 3.5) * self.char_bits / self.baudrate
                start = max(first, self._free_at)
                self._free_at = start + wire
                await asyncio.sleep(self._free_at - loop.time())
            try:
                os.write(dst, data)
            except OSError:
                return
            self.bytes_relayed += len(data)

    def cut(self) -> None:
        """Close the gateway's side: its port is gone."""
        gw_master, gw_slave = self._fds[2], self._fds[3]
        for fd in (gw_master, gw_slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = self._fds[:2]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
