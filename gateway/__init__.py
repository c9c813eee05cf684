"""gateway: telemetry gateway for a city's smart water network and bus fleet."""

__version__ = "0.1.0"
