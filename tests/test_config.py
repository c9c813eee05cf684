from pathlib import Path

import pytest

from gateway.config import ConfigError, read_secret
from gateway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_example_config_parses() -> None:
    settings = load_settings(ROOT / "config" / "gateway.example.toml")
    assert isinstance(settings, Settings)


def test_empty_file_gives_defaults_that_work(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""))
    assert settings.water.timezone == "Asia/Kolkata"
    assert settings.mqtt is None and settings.dma == ()
    assert settings.pipeline.queue_max_bytes > 0


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ('[pipeline]\nbatch_max_rows = "5"', "pipeline.batch_max_rows", "batch_max_rows = 50000"),
        ("[gateway]\nidd = 'x'", "gateway.idd", "did you mean 'id'"),
        ("[log]\nformat = 'xml'", "log.format", "one of 'kv', 'json'"),
        ("[postgres]\npassword = 'hunter2'", "postgres.password", "password_env"),
        ("[postgres]\ndsn = 'postgresql://u:pw@h/db'", "postgres", "password_env"),
        ("[pipeline]\nqueue_max_bytes = 10", "pipeline", "at least 1048576"),
        ("[pipeline\n", "", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path: Path, text: str, key: str, fix: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert info.value.key == key
    assert fix in message


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"copy config/gateway\.example\.toml"):
        load_settings(tmp_path / "nope.toml")


def test_secrets_come_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_SECRET", "s3cret")
    assert read_secret("GW_TEST_SECRET", None, what="x") == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert read_secret(None, str(secret), what="x") == "from-file"
    assert read_secret(None, None, what="x") is None
    with pytest.raises(ConfigError, match="export GW_TEST_MISSING"):
        read_secret("GW_TEST_MISSING", None, what="database password")
