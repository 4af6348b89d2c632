"""Fixtures for the Dagster layer: the demo's sample data, a temporary instance, definitions.

Every test runs real jobs in a real (SQLite, temporary) Dagster instance against real Parquet
files; asset values are stored under the test's temporary directory.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ml4t_pipeline.pipeline.definitions import build_defs
from ml4t_pipeline.pipeline.io_manager import TableSet
from ml4t_pipeline.pipeline.local_postgres import (
    Connection,
    PostgresUnavailableError,
    local_postgres,
    server_programs,
)
from ml4t_pipeline.pipeline.partitions import MonthKey
from ml4t_pipeline.pipeline.resources import ResultStore
from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

# The data `make demo` generates: 60 assets x 90 business days from 2024-01-01.
DEMO_SPEC = SampleSpec(assets=60, days=90, start=dt.date(2024, 1, 1), scenario="mixed", seed=2)
JAN, FEB, MAR = dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@dataclass
class Pipeline:
    """Definitions bound to one data directory, one storage directory and one instance."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    storage: Path
    data_dir: Path

    def run(
        self, job: str, partition_key: str | None = None, *, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            run_config=QUIET,
            instance=self.instance,
            partition_key=partition_key,
            raise_on_error=raise_on_error,
        )

    def backtest(self, key: MonthKey) -> TableSet:
        return ResultStore(base_dir=str(self.storage)).read_backtest(key)


@contextlib.contextmanager
def temp_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """A SQLite-backed Dagster instance in `home` (DAGSTER_HOME points there meanwhile)."""
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def make_pipeline(data_dir: Path, home: Path, instance: dg.DagsterInstance) -> Pipeline:
    storage = home / "storage"
    defs = build_defs(data_dir=str(data_dir), storage_dir=str(storage))
    return Pipeline(defs=defs, instance=instance, storage=storage, data_dir=data_dir)


@pytest.fixture(scope="session")
def needs_postgres() -> None:
    """Skip, saying why, where the PostgreSQL server programs or dagster-postgres are not
    installed (.ci/run installs them when it can)."""
    try:
        server_programs()
    except PostgresUnavailableError as exc:
        pytest.skip(f"no PostgreSQL here ({exc}); .ci/run installs it when it can")
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        pytest.skip("dagster-postgres is not installed: pip install -e '.[postgres]'")


@pytest.fixture(scope="session")
def local_pg(needs_postgres: None) -> Iterator[Connection]:
    """A throwaway PostgreSQL on 127.0.0.1 for the session; a failure to start is an error."""
    with local_postgres() as connection:
        yield connection


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    write_sample_data(DEMO_SPEC, out)
    return out


@pytest.fixture
def pipeline(sample_dir: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh instance and storage over the sample data."""
    with temp_instance(tmp_path / "home") as instance:
        yield make_pipeline(sample_dir, tmp_path, instance)


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    """Keys of the assets a run materialized."""
    return {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def universe_prices(data_dir: Path, universe: list[str]) -> pl.DataFrame:
    return pl.read_parquet(data_dir / "prices.parquet").filter(pl.col("asset_id").is_in(universe))
