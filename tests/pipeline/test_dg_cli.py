"""The `dg` CLI on this project ([tool.dg] in pyproject.toml), as README shows it: `dg check
defs`, `dg list defs`, `dg launch` (the commands `make demo`'s partitions run with) and `dg dev`
(`make ui`), each in a fresh process over a temporary DAGSTER_HOME, none printing a
deprecation or supersession warning; the `dagster` commands they replace do print one."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from ml4t_pipeline.pipeline.catalog import ASSET_CATALOG, OWNER
from ml4t_pipeline.pipeline.local_postgres import HOST, free_port
from ml4t_pipeline.pipeline.partitions import MonthKey
from tests.pipeline.conftest import FEB, JAN
from tests.pipeline.ui_server import (
    BIN,
    REPO,
    UiServer,
    _wait_ready,
    spawn,
    stop,
    ui_env,
)

TIMEOUT_S = 300
# a Python warning line ("...: SupersessionWarning: ..."), or dg's and Dagster's own notices
NOTICE = re.compile(
    r"\w+Warning: |superseded|deprecat|does not match the virtual environment", re.I
)


def _env(home: Path, data_dir: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = ui_env(home, data_dir)
    env.pop("VIRTUAL_ENV", None)  # as README runs them: .venv/bin/dg, nothing activated
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert out.returncode == 0, f"{argv}: {out.stderr[-3000:]}"
    return out


def _notices(text: str) -> list[str]:
    return [line for line in text.splitlines() if NOTICE.search(line)]


@pytest.fixture
def env(sample_dir: Path, tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path / "home", sample_dir)


def test_dg_checks_and_lists_the_definitions(env: dict[str, str]) -> None:
    checked = _run([str(BIN / "dg"), "check", "defs"], env)
    assert "All definitions loaded successfully." in checked.stdout
    assert _notices(checked.stdout + checked.stderr) == []
    listed = _run([str(BIN / "dg"), "list", "defs", "--json"], env)
    assert _notices(listed.stderr) == []
    defs = json.loads(listed.stdout)
    team = OWNER.removeprefix("team:")
    assets = {a["asset_key"]: a for a in defs["assets"]}
    assert set(assets) == set(ASSET_CATALOG)
    for name, asset in assets.items():
        assert asset["owners"] == [{"team": team}], name
        assert set(asset["kinds"]) == set(ASSET_CATALOG[name].kinds), name
        assert asset["description"], name
    assert {c["name"] for c in defs["asset_checks"]} >= {"prices_contract", "no_look_ahead"}
    assert all(c["description"] for c in defs["asset_checks"])
    assert {j["name"] for j in defs["jobs"]} >= {"inputs_job", "backtest_job", "summary_job"}


def test_readme_launch_commands_run_without_deprecation_notices(env: dict[str, str]) -> None:
    dg_cli = str(BIN / "dg")
    commands = [
        [dg_cli, "launch", "--job", "inputs_job"],
        [dg_cli, "launch", "--job", "backtest_job", "--partition", MonthKey(JAN, "core").key],
        [
            dg_cli,
            "launch",
            "--assets",
            "feature_table,backtest,trade_attribution",
            "--partition",
            MonthKey(FEB, "core").key,
        ],
        [dg_cli, "launch", "--job", "summary_job", "--partition", "core"],
        [dg_cli, "launch", "--job", "sweep_job", "--partition", "top_k_and_stop|core"],
    ]
    for argv in commands:
        out = _run(argv, env)
        assert _notices(out.stderr) == [], argv
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        done = instance.get_materialized_partitions(dg.AssetKey("backtest"))
        summaries = instance.get_materialized_partitions(dg.AssetKey("performance_summary"))
        sweeps = instance.get_materialized_partitions(dg.AssetKey("parameter_sweep"))
    assert done == {MonthKey(JAN, "core").key, MonthKey(FEB, "core").key}
    assert summaries == {"core"}
    assert sweeps == {"top_k_and_stop|core"}  # its variants ran in spawned worker processes
    # the command these replace says it is superseded: the notice check above can fail
    old = _run(
        [
            str(BIN / "dagster"),
            *("job", "execute", "-m", "ml4t_pipeline.pipeline.definitions", "-j", "inputs_job"),
        ],
        env,
    )
    assert any("SupersessionWarning" in line for line in _notices(old.stderr))


def test_dg_dev_serves_the_ui_without_notices(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    server = UiServer(url=f"http://{HOST}:{port}", home=Path(env["DAGSTER_HOME"]))
    argv = [str(BIN / "dg"), "dev", "-h", HOST, "-p", str(port)]
    server.services.append(spawn("dg-dev", argv, env=env, log_dir=tmp_path))
    try:
        _wait_ready(server, 120.0)
    finally:
        stop(server.services[0])
    log = (tmp_path / "dg-dev.log").read_text(errors="replace")
    assert "Serving dagster-webserver" in log
    assert _notices(log) == []
