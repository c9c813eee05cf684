"""Simulated bus fleet over MQTT: routes, bus units, AVL replay and the CLI.

routes.py     PMPML stop chains and Cairns GTFS shapes (shipped in data/)
fleet.py      buses, engine model, faults, messages (pure, deterministic)
ecu.py        the buses' own J1939 encoder (ecu.dbc through cantools, DM1, TP.BAM)
avl.py        replay of real AVL as pvt messages
publisher.py  paho publisher
cli.py        `gateway sim buses` (register it with `firmware_sim.buses.register`)
"""

from firmware_sim.buses.cli import register, run_buses

__all__ = ["register", "run_buses"]
