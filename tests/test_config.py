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
    assert settings.sources == () and settings.dma == ()
    assert [(p.name, p.type) for p in settings.sinks] == [("postgres", "postgres")]
    assert settings.pipeline.queue_max_bytes > 0


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ('[pipeline]\nbatch_max_rows = "5"', "pipeline.batch_max_rows", "batch_max_rows = 50000"),
        ("[gateway]\nidd = 'x'", "gateway.idd", "did you mean 'id'"),
        ("[log]\nformat = 'xml'", "log.format", "one of 'kv', 'json'"),
        ("[postgres]\npassword = 'hunter2'", "sinks.postgres.password", "password_env"),
        ("[postgres]\ndsn = 'postgresql://u:pw@h/db'", "sinks.postgres", "password_env"),
        ("[sinks.db]\ntype = 'oracle'", "sinks.db.type", "write one of 'postgres'"),
        ("[sources.x]\nprofiles_dir = 'p'", "sources.x.type", "missing: write one of 'modbus'"),
        ("[sources.x]\ntype = 'modbus'\nprofile_dir = 'p'", "sources.x.profile_dir", "did you"),
        ("[modbus]\n[sources.modbus]\ntype = 'modbus'", "sources.modbus", "defined twice"),
        ("[sources.a]\ntype = 'modbus'\n[sinks.a]\ntype = 'sqlite'", "(top level)", "unique"),
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


def test_two_parts_of_one_type_run_side_by_side_under_their_names(tmp_path: Path) -> None:
    text = """
[sources.city-broker]
type = "mqtt"
[sources.city-broker.broker]
host = "mqtt.city.example"
[sources.vendor-broker]
type = "mqtt"
prefix = "vendor"
[sources.vendor-broker.broker]
host = "mqtt.vendor.example"
[sinks.central]
type = "postgres"
[sinks.local]
type = "sqlite"
"""
    settings = load_settings(write(tmp_path, text))
    assert [(p.name, p.type, p.settings.broker.host) for p in settings.sources] == [
        ("city-broker", "mqtt", "mqtt.city.example"),
        ("vendor-broker", "mqtt", "mqtt.vendor.example"),
    ]
    assert [(p.name, p.type) for p in settings.sinks] == [
        ("central", "postgres"),
        ("local", "sqlite"),
    ]


def test_the_first_format_still_loads_as_named_parts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = """
[pipeline]
sinks = ["postgres", "sqlite"]
[postgres]
dsn = "postgresql://postgres@127.0.0.1:5432/old"
[sqlite]
path = "var/old.sqlite"
[modbus]
profiles_dir = "config/profiles"
[mqtt]
prefix = "pmpml"
[publish]
prefix = "pmpml"
"""
    with caplog.at_level("WARNING", logger="gateway.settings"):
        settings = load_settings(write(tmp_path, text))
    assert [(p.name, p.type) for p in settings.sources] == [("modbus", "modbus"), ("mqtt", "mqtt")]
    assert [(p.name, p.type) for p in settings.sinks] == [
        ("publish", "mqtt"), ("postgres", "postgres"), ("sqlite", "sqlite"),
    ]  # fmt: skip
    assert settings.first_sink("postgres").dsn.endswith("/old")
    (record,) = [r for r in caplog.records if r.getMessage() == "config.old_form"]
    assert "[modbus] -> [sources.modbus] type = 'modbus'" in record._fields["change"]  # type: ignore[attr-defined]


def test_a_folder_given_as_the_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder; give the TOML file"):
        load_settings(tmp_path)
