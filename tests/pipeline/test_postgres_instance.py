"""The team instance file and the throwaway PostgreSQL behind `make ui-postgres`.

The backfill and contention tests over a Postgres-backed instance are in test_ui_backfill.py
(setup `postgres`); here: the instance file keeps every setting of dagster.yaml and reads its
connection only from the environment, and `local_postgres` listens on 127.0.0.1 only, wants
the password, and leaves nothing running or on disk.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.pipeline.jobs import DEFAULT_CRON, SCHEDULE_CRON_ENV, build_monthly_schedule
from ml4t_pipeline.pipeline.local_postgres import INSTANCE_FILE, Connection, local_postgres
from ml4t_pipeline.pipeline.partitions import load_partition_spec

REPO = Path(__file__).resolve().parents[2]


def _yaml(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def test_the_team_file_is_dagster_yaml_with_postgres_storage() -> None:
    team, embedded = _yaml(INSTANCE_FILE), _yaml(REPO / "dagster.yaml")
    assert "storage" not in embedded  # SQLite under DAGSTER_HOME, the default
    assert {k: v for k, v in team.items() if k != "storage"} == embedded
    assert list(team["storage"]) == ["postgres"]  # type: ignore[call-overload]


def test_the_team_file_takes_its_connection_from_the_environment() -> None:
    storage = _yaml(INSTANCE_FILE)["storage"]
    db = storage["postgres"]["postgres_db"]  # type: ignore[index]
    literal = {k: v for k, v in db.items() if k != "scheme"}
    assert set(literal) == {"hostname", "port", "username", "password", "db_name"}
    assert all(isinstance(v, dict) and set(v) == {"env"} for v in literal.values()), literal
    assert set(Connection("h", 1, "u", "p", "d").env()) == {v["env"] for v in literal.values()}


def _answers(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def _other_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent
            address: str = sock.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_the_throwaway_server_is_local_password_protected_and_removed(needs_postgres: None) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    with local_postgres() as connection:
        assert connection.host == "127.0.0.1"
        with (
            psycopg2.connect(
                host=connection.host,
                port=connection.port,
                user=connection.user,
                password=connection.password,
                dbname=connection.database,
            ) as conn,
            conn.cursor() as cursor,
        ):
            cursor.execute("SHOW listen_addresses")
            assert cursor.fetchone() == ("127.0.0.1",)
            cursor.execute("SHOW unix_socket_directories")
            (sockets,) = cursor.fetchone()
            cursor.execute("SHOW data_directory")
            (data_dir,) = cursor.fetchone()
        folder = Path(data_dir).parent
        assert Path(sockets.strip("'")) == folder  # no socket outside its own folder
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(
                host=connection.host,
                port=connection.port,
                user=connection.user,
                password=connection.password + "x",
                dbname=connection.database,
            )
        other = _other_address()
        if other is not None:
            assert not _answers(other, connection.port), f"the server answers on {other}"
    assert not _answers(connection.host, connection.port), "the server still runs"
    assert not folder.exists(), f"{folder} left behind"


def test_the_wrapper_runs_a_command_on_a_postgres_instance(needs_postgres: None) -> None:
    """`python -m ml4t_pipeline.pipeline.local_postgres -- CMD` (what `make ui-postgres`
    runs): CMD sees a DAGSTER_HOME whose instance stores in the server, and its exit status
    comes back; afterwards the server and the temporary DAGSTER_HOME are gone."""
    probe = (
        "import os, sys, dagster as dg\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    print(type(instance.run_storage).__name__, os.environ['DAGSTER_HOME'],"
        " os.environ['DAGSTER_PG_PORT'])\n"
        "sys.exit(3)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG_")}
    wrapper = [sys.executable, "-m", "ml4t_pipeline.pipeline.local_postgres", "--"]
    done = subprocess.run(
        [*wrapper, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    storage, home, port = done.stdout.split()
    assert storage == "PostgresRunStorage", done.stdout
    assert not Path(home).exists(), f"{home} left behind"
    assert not _answers("127.0.0.1", int(port)), "the server still runs"


def test_the_schedule_runs_at_the_configured_cron(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_partition_spec()
    monkeypatch.delenv(SCHEDULE_CRON_ENV, raising=False)
    assert build_monthly_schedule(spec).cron_schedule == DEFAULT_CRON
    monkeypatch.setenv(SCHEDULE_CRON_ENV, "30 7 2 * *")
    schedule: dg.ScheduleDefinition = build_monthly_schedule(spec)
    assert schedule.cron_schedule == "30 7 2 * *"
    monkeypatch.setenv(SCHEDULE_CRON_ENV, "0 6 32 * *")
    with pytest.raises(ConfigError, match=r"\$ML4T_SCHEDULE_CRON='0 6 32 \* \*'"):
        build_monthly_schedule(spec)
