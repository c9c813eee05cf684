"""Modbus driver: water meters over Modbus TCP, RTU and RTU-over-TCP (see README.md)."""

from gateway.drivers.modbus.settings import DeviceSettings, LineSettings, ModbusSettings
from gateway.drivers.modbus.source import DeviceStatus, ModbusSource

__all__ = ["DeviceSettings", "DeviceStatus", "LineSettings", "ModbusSettings", "ModbusSource"]
