"""A simulated water network served over Modbus TCP and RTU (see server.py)."""

from firmware_sim.water.devices import FaultSpec, SimMeter
from firmware_sim.water.model import LeakSpec, ModelSettings, WaterModel
from firmware_sim.water.server import WaterNetworkSim, WaterSimSettings

__all__ = [
    "FaultSpec",
    "LeakSpec",
    "ModelSettings",
    "SimMeter",
    "WaterModel",
    "WaterNetworkSim",
    "WaterSimSettings",
]
