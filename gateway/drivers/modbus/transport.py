"""Transports: one pymodbus client behind a small seam that raises our errors.

    ModbusLink(client, unit_check=...)   .read(fc, address, count, unit, timeout) -> list[int]
                                         .write(fc, address, values, unit, timeout) -> None
    open_link(kind, *, host, port, serial_port, baudrate, parity, bytesize, stopbits,
              timeout) -> ModbusLink      kind is tcp | rtu | rtu_over_tcp

A failed transaction raises a `LinkError` subclass carrying the quality flags
the readings of that transaction get; the scheduler decides retries and
backoff. pymodbus's own retries and reconnect loop are switched off: the
scheduler owns time on the line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType

from gateway.batch import Quality


class LinkError(Exception):
    """A transaction failed; `quality` is what its readings are marked with."""

    quality: int = Quality.COMM_ERROR
    state: str = "comm_error"  # a short stable word for logs and status


class LinkDown(LinkError):
    """No connection: refused, unreachable, or the serial port is gone."""

    state = "link_down"


class DeviceTimeout(LinkError):
    quality = Quality.COMM_ERROR | Quality.TIMEOUT
    state = "timeout"


class FrameError(LinkError):
    """Bytes arrived but no valid reply: CRC error, garbage, truncated frame, wrong unit id."""

    quality = Quality.COMM_ERROR | Quality.CRC_ERROR
    state = "bad_frame"


class DeviceException(LinkError):
    """The device answered with a Modbus exception (1-4, 0x0A, 0x0B...)."""

    quality = Quality.DEVICE_EXCEPTION
    state = "exception"

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(message or f"modbus exception code {code:#04x}")


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


class ModbusLink:
    """One connection (a TCP socket or a serial port) and what it has seen.

    `rx_seen` notes bytes received since the last request was sent: a timeout
    after bytes arrived is a bad frame (CRC, garbage, truncated, wrong unit),
    not a silent device."""

    def __init__(self, client: Any, *, rtu: bool, address: str = "") -> None:
        self.client = client
        self.rtu = rtu
        self.address = address  # where it connects, for people: 10.0.0.5:502, /dev/ttyUSB0
        self.rx_seen = b""
        self.tx_bytes = 0
        self.rx_bytes = 0
        client.ctx.trace_packet = self._trace  # the transaction manager calls it per packet

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.rx_seen = b""
            self.tx_bytes += len(data)
        elif data:
            self.rx_seen = data
        return data

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def connect(self, timeout: float) -> None:
        if self.client.connected:
            return
        self.client.ctx.comm_params.timeout_connect = timeout
        try:
            ok = await self.client.connect()
        except OSError as err:  # e.g. the serial port vanished
            raise LinkDown(f"cannot open: {err}") from err
        if not ok:
            raise LinkDown("cannot connect")

    def close(self) -> None:
        self.client.close()

    async def _execute(self, call: Callable[[], Awaitable[Any]], unit: int, timeout: float) -> Any:
        if not self.client.connected:
            await self.connect(timeout)
        self.client.ctx.comm_params.timeout_connect = timeout
        try:
            response = await call()
        except ModbusIOException as err:
            text = str(err)
            if "device id" in text:
                raise FrameError(f"reply from the wrong unit id: {text}") from err
            seen, self.rx_seen = self.rx_seen, b""
            if seen:
                raise FrameError(self._describe_bad(seen, unit)) from err
            raise DeviceTimeout(f"no reply within {timeout:g}s") from err
        except ConnectionException as err:
            raise LinkDown(str(err) or "connection lost") from err
        except OSError as err:
            self.client.close()
            raise LinkDown(f"{type(err).__name__}: {err}") from err
        self.rx_bytes += len(self.rx_seen)
        self.rx_seen = b""
        if response is None:
            raise DeviceTimeout("no reply")
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise DeviceException(code)
        return response

    def _describe_bad(self, seen: bytes, unit: int) -> str:
        if self.rtu and len(seen) >= 4:
            good_crc = crc16(seen[:-2]) == int.from_bytes(seen[-2:], "little")
            if good_crc and seen[0] != unit:
                return f"reply from unit {seen[0]}, expected {unit}"
            if not good_crc:
                return f"CRC error or garbage in {len(seen)} bytes"
        return f"truncated or garbled reply ({len(seen)} bytes)"

    async def read(self, fc: int, address: int, count: int, unit: int, timeout: float) -> list[int]:
        """Registers (fc 3, 4) or bits as 0/1 (fc 1, 2)."""
        c = self.client
        if fc == 3:
            r = await self._execute(
                lambda: c.read_holding_registers(address, count=count, device_id=unit),
                unit,
                timeout,
            )
        elif fc == 4:
            r = await self._execute(
                lambda: c.read_input_registers(address, count=count, device_id=unit),
                unit,
                timeout,
            )
        elif fc in (1, 2):
            reader = c.read_coils if fc == 1 else c.read_discrete_inputs
            r = await self._execute(
                lambda: reader(address, count=count, device_id=unit), unit, timeout
            )
            return [1 if b else 0 for b in r.bits[:count]]
        else:
            raise ValueError(f"cannot read with function code {fc}")
        regs = list(r.registers)
        if len(regs) < count:
            raise FrameError(f"short reply: {len(regs)} of {count} registers")
        return regs

    async def write(
        self, fc: int, address: int, values: Sequence[int], unit: int, timeout: float
    ) -> None:
        c = self.client
        call: Callable[[], Awaitable[Any]]
        if fc == 5:
            call = lambda: c.write_coil(address, bool(values[0]), device_id=unit)  # noqa: E731
        elif fc == 6:
            call = lambda: c.write_register(address, int(values[0]), device_id=unit)  # noqa: E731
        elif fc == 15:
            call = lambda: c.write_coils(address, [bool(v) for v in values], device_id=unit)  # noqa: E731
        elif fc == 16:
            call = lambda: c.write_registers(address, [int(v) for v in values], device_id=unit)  # noqa: E731
        else:
            raise ValueError(f"cannot write with function code {fc}; use 5, 6, 15 or 16")
        await self._execute(call, unit, timeout)


def open_link(
    kind: str,
    *,
    host: str = "127.0.0.1",
    port: int = 502,
    serial_port: str = "",
    baudrate: int = 9600,
    parity: str = "N",
    bytesize: int = 8,
    stopbits: int = 1,
    timeout: float = 1.0,
) -> ModbusLink:
    """A link that connects on first use. Nothing is opened here."""
    common: dict[str, Any] = {"timeout": timeout, "retries": 0, "reconnect_delay": 0.0}
    if kind == "tcp":
        tcp = AsyncModbusTcpClient(host, port=port, **common)
        return ModbusLink(tcp, rtu=False, address=f"{host}:{port}")
    if kind == "rtu_over_tcp":
        over_tcp = AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU, **common)
        return ModbusLink(over_tcp, rtu=True, address=f"{host}:{port}")
    if kind == "rtu":
        client = AsyncModbusSerialClient(
            serial_port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            parity=parity,
            bytesize=bytesize,
            stopbits=stopbits,
            **common,
        )
        return ModbusLink(client, rtu=True, address=serial_port)
    raise ValueError(f"unknown line kind {kind!r}; use tcp, rtu or rtu_over_tcp")


async def sleep_until(loop_time: float) -> None:
    delay = loop_time - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)
