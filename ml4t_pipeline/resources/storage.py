"""Read access to stored backtest months: the chained engine state and the result tables.

The `ParquetIOManager` writes; this resource reads the same layout for the two things an IO
manager input cannot express: "the previous month of this universe" and "every stored month
of this universe, in order".
"""

import datetime as dt
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ml4t_pipeline.engine import EngineState
from ml4t_pipeline.errors import StateError
from ml4t_pipeline.io_manager import (
    TableSet,
    asset_path,
    partition_parts,
    read_table_set,
    resolve_storage_root,
)
from ml4t_pipeline.partitions import BACKTEST_PARTITIONS, MONTH, UNIVERSE, MonthKey

BACKTEST = dg.AssetKey("backtest")
STATE_FILE = "state.json"


class ResultStore(dg.ConfigurableResource["ResultStore"]):
    """The storage root shared with `ParquetIOManager` (same `base_dir` rule)."""

    base_dir: str | None = None

    _root: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._root = resolve_storage_root(self.base_dir, context.instance)

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = resolve_storage_root(self.base_dir, None)
        return self._root

    def backtest_dir(self, key: MonthKey) -> Path:
        return asset_path(self.root, BACKTEST, partition_parts(key.key, BACKTEST_PARTITIONS))

    def read_state(self, key: MonthKey) -> EngineState:
        """The engine state saved at the end of backtest partition `key`."""
        path = self.backtest_dir(key) / STATE_FILE
        if not path.is_file():
            msg = (
                f"no saved engine state for backtest partition {key} (month {key.month}, "
                f"universe {key.universe!r}); materialize that month first: months of a "
                f"universe run in order (looked for {path})"
            )
            raise StateError(msg)
        return EngineState.from_json(path.read_text(encoding="utf-8"))

    def read_backtest(self, key: MonthKey) -> TableSet:
        return read_table_set(self.backtest_dir(key))

    def stored_months(self, universe: str) -> list[dt.date]:
        """Months of `universe` with a stored backtest, in order."""
        base = self.root.joinpath(*BACKTEST.path)
        months = [
            dt.date.fromisoformat(path.parent.name.removeprefix(f"{MONTH}="))
            for path in base.glob(f"{MONTH}=*/{UNIVERSE}={universe}")
            if (path / STATE_FILE).is_file()
        ]
        return sorted(months)
