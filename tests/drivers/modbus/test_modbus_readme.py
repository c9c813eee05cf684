"""The README's sample config and sample profile parse and name real profiles."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from gateway.config import convert
from gateway.drivers.modbus.profiles import default_profiles_dir, load_profiles, parse_profile
from gateway.drivers.modbus.settings import ModbusSettings
from gateway.drivers.modbus.source import ModbusSource
from gateway.streams import StreamRegistry

README = Path(__file__).resolve().parents[3] / "gateway" / "drivers" / "modbus" / "README.md"


def toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)


def test_readme_sample_config_parses_into_settings() -> None:
    sample = tomllib.loads(toml_blocks()[0])
    settings = convert(ModbusSettings, sample["modbus"], file=str(README), key="modbus")
    assert [line.kind for line in settings.lines] == ["tcp", "rtu", "rtu_over_tcp"]
    assert settings.line("rs485-1").parity == "E"
    profiles = load_profiles(default_profiles_dir())
    for device in settings.devices:
        assert device.profile in profiles, device
    # a source builds from it (nothing connects until run) and registers the streams
    registry = StreamRegistry()
    source = ModbusSource(settings, registry, profiles=profiles)
    assert source.devices_total == 4
    assert "dma-01/inlet/flow_lps" in registry and "dma-07/hf-1/pressure_hf_m" in registry


def test_readme_sample_profile_parses() -> None:
    profile = parse_profile(tomllib.loads(toml_blocks()[1]), str(README))
    point = profile.point("flow_lps")
    assert (point.fc, point.type, point.order, point.unit) == (4, "float32", "ABCD", "L/s")
