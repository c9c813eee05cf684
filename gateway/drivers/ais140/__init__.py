"""AIS-140 tracking units: packets (any vendor's), and a TCP/UDP source for the units.

    unit --TCP/UDP--> Ais140Source: framer.Framer (frames by the grammar, not reads)
                        --> parser.Ais140Parser (profiles.toml; generic fallback)
                        --> Location | Login | Heartbeat --> FixBatch + readings + events
                        --> ack where the vendor's profile says the unit expects one

The MQTT driver reads the same packets off its `ais140` topic with the same parser.
"""

from gateway.drivers.ais140.packets import (
    ALERT_KINDS,
    Heartbeat,
    Location,
    Login,
    Packet,
    PacketError,
    normalise_reg,
)
from gateway.drivers.ais140.parser import Ais140Parser
from gateway.drivers.ais140.profiles import GENERIC, Profile, load_profiles

__all__ = [
    "ALERT_KINDS",
    "GENERIC",
    "Ais140Parser",
    "Heartbeat",
    "Location",
    "Login",
    "Packet",
    "PacketError",
    "Profile",
    "load_profiles",
    "normalise_reg",
]
