"""The gateway's settings for polling a running water simulator (the demo and tests).

The simulator imports nothing of the gateway, so the wiring between the two lives
here, on the gateway's side: the sim says where its devices listen and which
profile reads each, and this turns that into the ModbusSource's settings.

    modbus_settings(sim, interval=1.0, rtu=False, over_tcp=False) -> ModbusSettings
"""

from __future__ import annotations

from firmware_sim.water.server import WaterNetworkSim
from gateway.drivers.modbus.profiles import default_profiles_dir
from gateway.drivers.modbus.settings import DeviceSettings, LineSettings, ModbusSettings


def modbus_settings(
    sim: WaterNetworkSim,
    *,
    interval: float = 1.0,
    rtu: bool = False,
    over_tcp: bool = False,
    timeout: float = 0.5,
    retries: int = 1,
    profiles_dir: str | None = None,
) -> ModbusSettings:
    """Settings for a ModbusSource that polls `sim`: over TCP, over the pty
    (rtu=True), or RTU frames over TCP as through a converter (over_tcp=True)."""
    s = sim.settings
    if over_tcp:
        if sim.rtu_tcp_port is None:
            raise RuntimeError("start the sim with rtu_over_tcp=True first")
        line = LineSettings(
            name="sim-rtu-tcp",
            kind="rtu_over_tcp",
            host=s.host,
            tcp_port=sim.rtu_tcp_port,
            timeout=timeout,
            retries=retries,
        )
    elif rtu:
        if sim.rtu_port is None:
            raise RuntimeError("start the sim with rtu=True first")
        line = LineSettings(
            name="sim-rtu",
            kind="rtu",
            port=sim.rtu_port,
            baudrate=s.baudrate or 115200,
            timeout=timeout,
            retries=retries,
        )
    else:
        line = LineSettings(
            name="sim-tcp", kind="tcp", host=s.host, timeout=timeout, retries=retries
        )
    devices = tuple(
        DeviceSettings(
            name=m.name,
            line=line.name,
            profile=m.profile,
            unit_id=m.unit_id,
            interval=min(interval, 0.5 / s.speed) if m.role == "hf" else interval,
            tcp_port=0 if rtu or over_tcp else m.tcp_port,
        )
        for m in sim.devices
    )
    return ModbusSettings(
        profiles_dir=profiles_dir or str(default_profiles_dir()), lines=(line,), devices=devices
    )
