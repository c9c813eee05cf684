"""Simulated field devices that speak the real protocols (Modbus, MQTT)."""
