"""The driver README stays true: its sample config loads, its tables match the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from gateway.config import convert
from gateway.drivers.ais140 import load_profiles
from gateway.drivers.ais140.settings import Ais140SourceSettings

README = Path(__file__).resolve().parents[3] / "gateway" / "drivers" / "ais140" / "README.md"
TEXT = README.read_text()
SOURCE = (README.parent / "source.py").read_text() + (README.parent / "framer.py").read_text()


def test_sample_config_loads_into_the_settings() -> None:
    (sample,) = re.findall(r"```toml\n(.*?)```", TEXT, re.S)
    settings = convert(Ais140SourceSettings, tomllib.loads(sample)["ais140"], file=str(README))
    assert settings.vehicles["869867036345389"] == "MH12-KQ-4321"
    assert settings.port == 5027 and settings.udp_port == -1


def test_the_profile_table_is_the_profiles_file() -> None:
    rows = re.findall(r"^\| `(\w+)` \| .* \| (\w+) \|$", TEXT, re.M)
    assert {name: checksum for name, checksum in rows} == {
        name: p.checksum for name, p in load_profiles().items()
    }


def test_every_reject_and_disconnect_reason_is_documented() -> None:
    code = SOURCE + (README.parent / "grammar.py").read_text()
    code += (README.parent / "parser.py").read_text()
    reasons = set(re.findall(r'(?:PacketError|FrameError|_NoFit|_Disconnect)\(\s*"(\w+)"', code))
    reasons |= set(re.findall(r'disconnects\["(\w+)"\]', code))
    assert len(reasons) > 15
    missing = {r for r in reasons if f"`{r}`" not in TEXT}
    assert not missing
