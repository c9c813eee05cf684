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
            asyncio.create_task(self._relay(gw_master, dev_master), name="wire:to-device"),
            asyncio.create_task(self._relay(dev_master, gw_master), name="wire:to-gateway"),
        ]

    async def _read(self, fd: int) -> bytes:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""

    async def _relay(self, src: int, dst: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self._read(src)
            except OSError:
                return
            if not data:
                continue
            if self.baudrate:
                # gather the rest of the frame as it arrives; a pause longer than
                # 3.5 characters would end it on a real line
                gap = max(0.0015, 3.5 * self.char_bits / self.baudrate)
                while True:
                    try:
                        more = await asyncio.wait_for(self._read(src), gap)
                    except TimeoutError:
                        break
                    data += more
                wire = (len(data) + 3.5) * self.char_bits / self.baudrate
                start = max(loop.time(), self._free_at)
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
