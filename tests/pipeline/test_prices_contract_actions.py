"""The Dagster prices contract reads the validated corporate actions (an empty frame when there
is no file), so a split the actions explain is not reported; tolerated rows are table rows too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from ml4t_pipeline.pipeline.checks import prices_contract
from ml4t_pipeline.pipeline.resources import DataDirResource

NO_ACTIONS = pl.DataFrame(
    schema={"timestamp": pl.Datetime("us", "UTC"), "asset_id": pl.String, "split_ratio": pl.Float64}
)
DAYS = [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=k) for k in range(10)]


def halved() -> pl.DataFrame:
    """A 2:1 split on day 5: the price halves, the volume doubles; one high is off in the
    15th digit."""
    close = [100.0] * 5 + [50.0] * 5
    high = [*close[:3], 100.0 * (1 - 1e-15), *close[4:]]
    volume = [1000.0] * 5 + [2000.0] * 5
    return pl.DataFrame(
        {"timestamp": DAYS, "asset_id": "A", "open": close, "high": high, "low": close}
    ).with_columns(close=pl.Series(close), volume=pl.Series(volume))


def rules(result: dg.AssetCheckResult) -> dict[str, str]:
    table = result.metadata["failures"]
    assert isinstance(table, dg.TableMetadataValue)
    return {str(r.data["rule"]): str(r.data["severity"]) for r in table.records}


def test_without_an_actions_file_the_split_is_a_warning(tmp_path: Path) -> None:
    result = prices_contract(
        prices=halved(), corporate_actions=NO_ACTIONS, data_dir=DataDirResource(path=str(tmp_path))
    )
    assert isinstance(result, dg.AssetCheckResult)
    assert result.passed
    assert rules(result) == {
        "possible_split": "warning",
        "high_below_max_open_close": "info",
        "high_below_low": "info",  # the same high, below the low by as little
    }
    assert result.metadata["tolerated"] == dg.IntMetadataValue(2)


def test_the_corporate_actions_explain_the_split(tmp_path: Path) -> None:
    actions = pl.DataFrame({"timestamp": [DAYS[5]], "asset_id": ["A"], "split_ratio": [2.0]})
    result = prices_contract(
        prices=halved(), corporate_actions=actions, data_dir=DataDirResource(path=str(tmp_path))
    )
    assert isinstance(result, dg.AssetCheckResult)
    assert rules(result) == {"high_below_max_open_close": "info", "high_below_low": "info"}
