"""The daemon as an operator runs it: `gateway run -c FILE` in its own process."""

import asyncio
import re
import signal
import sys
from pathlib import Path

import psycopg
import pytest

from firmware_sim.water.model import ModelSettings
from firmware_sim.water.server import WaterNetworkSim, WaterSimSettings
from gateway.config import ConfigError
from gateway.db.migrate import migrate
from gateway.pipeline.outbox_command import read_stats
from gateway.settings import load_settings
from tests.fakes import sim_devices_toml


def config_for(
    sim: WaterNetworkSim, tmp_path: Path, dsn: str, *, drain: float = 10.0, durable: bool = True
) -> Path:
    devices = sim_devices_toml(sim, "modbus")
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[gateway]
id = "test-gw"
[pipeline]
batch_max_seconds = 0.2
drain_timeout = {drain}
durable = {str(durable).lower()}
[outbox]
directory = "{tmp_path / "outbox"}"
[sinks.postgres]
type = "postgres"
dsn = "{dsn}"
connect_timeout = 1.0
[metrics]
enabled = false
[sources.modbus]
type = "modbus"
[[sources.modbus.lines]]
name = "sim"
kind = "tcp"
host = "127.0.0.1"
timeout = 0.3
{devices}
"""
    )
    return path


async def start_gateway(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "run",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stored(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM readings")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def test_sigterm_drains_flushes_and_exits_zero(pg_dsn: str, tmp_path: Path) -> None:
    await migrate(pg_dsn)
    async with WaterNetworkSim(WaterSimSettings(model=ModelSettings(dmas=1))) as sim:
        proc = await start_gateway(config_for(sim, tmp_path, pg_dsn))
        for _ in range(100):
            await asyncio.sleep(0.2)
            if await stored(pg_dsn) > 20:
                break
        else:
            pytest.fail("no readings reached PostgreSQL within 20 s")
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log
    done = re.search(r"event=runtime.stopped rows_written=(\d+) rows_abandoned=(\d+)", log)
    assert done, log
    written, abandoned = int(done[1]), int(done[2])
    assert abandoned == 0
    assert await stored(pg_dsn) == written, "every confirmed row is in the table, once"


@pytest.mark.parametrize("durable", [True, False], ids=["outbox", "memory"])
async def test_unreachable_database_does_not_crash_the_daemon(
    tmp_path: Path, durable: bool
) -> None:
    dead = "postgresql://postgres@127.0.0.1:1/nowhere"
    async with WaterNetworkSim(WaterSimSettings(model=ModelSettings(dmas=1))) as sim:
        config = config_for(sim, tmp_path, dead, drain=1.0, durable=durable)
        proc = await start_gateway(config)
        assert proc.stderr is not None
        head = await asyncio.wait_for(proc.stderr.readuntil(b"event=sink.down"), 60)
        await asyncio.sleep(2)
        assert proc.returncode is None, "the daemon must keep running without its database"
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = (head + err).decode()
    assert proc.returncode == 0, log
    assert log.count("event=sink.down") == 1, "logged once per change of state"
    assert "event=device.up" in log
    if durable:
        held = re.search(r"event=delivery.retained sink=postgres rows=(\d+)", log)
        assert held and int(held[1]) > 0, log
        on_disk = read_stats(tmp_path / "outbox" / "outbox-postgres.sqlite")
        assert on_disk.rows == int(held[1]), "the outbox keeps them for the next start"
    else:
        held = re.search(r"event=delivery.abandoned sink=postgres rows=(\d+)", log)
        assert held and int(held[1]) > 0, "readings were held in memory while the database was away"


def test_bad_device_wiring_is_refused_before_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[modbus.devices]]\nname = "dma-01/inlet"\nline = "nope"\nprofile = "emf-flow-meter"\n'
    )
    with pytest.raises(ConfigError, match="line 'nope', which is not defined") as info:
        load_settings(path)
    assert info.value.key == "sources.modbus"


async def test_a_missing_database_is_named_with_the_command_that_creates_it(
    tmp_path: Path, pg_dsn: str
) -> None:
    missing = psycopg.conninfo.make_conninfo(pg_dsn, dbname="gw_no_such_database")
    async with WaterNetworkSim(WaterSimSettings(model=ModelSettings(dmas=1))) as sim:
        proc = await start_gateway(config_for(sim, tmp_path, missing, drain=1.0))
        assert proc.stderr is not None
        line = await asyncio.wait_for(proc.stderr.readuntil(b"event=sink.down"), 60)
        line += await asyncio.wait_for(proc.stderr.readline(), 10)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    text = line.decode()
    assert "'gw_no_such_database'" in text and "does not exist (the server is up)" in text
    assert "gateway db migrate --create --dsn" in text
