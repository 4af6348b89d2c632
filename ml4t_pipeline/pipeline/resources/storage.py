"""Read access to stored backtest months: the chained engine state and the result tables.

The `ParquetIOManager` writes; this resource reads the same `StorageLayout` for the two things
an IO manager input cannot express: "the previous month of this universe" and "every stored
month of this universe, in order".
"""

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ml4t_pipeline.engine import EngineState
from ml4t_pipeline.errors import StateError
from ml4t_pipeline.pipeline.io_manager import StorageRoot, TableSet, read_table_set
from ml4t_pipeline.pipeline.layout import PARTITION_FILE, STATE_FILE
from ml4t_pipeline.pipeline.partitions import MONTH, UNIVERSE, MonthKey

BACKTEST = dg.AssetKey("backtest")
"""The asset whose stored months this resource reads (the key `backtest_asset` defines)."""


class ResultStore(StorageRoot, dg.ConfigurableResource["ResultStore"]):
    """The storage root shared with `ParquetIOManager` (same `base_dir` rule)."""

    base_dir: str | None = None

    _root: Path | None = PrivateAttr(default=None)

    def backtest_dir(self, key: MonthKey) -> Path:
        return self.layout.location(BACKTEST.path, key.dimensions)

    def state_digest(self, key: MonthKey) -> str | None:
        """sha256 of the state saved by partition `key` (None when it has none)."""
        path = self.backtest_dir(key) / STATE_FILE
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

    def continued_from_digest(self, key: MonthKey) -> str | None:
        """The digest of the previous month's state that partition `key` started from."""
        path = self.backtest_dir(key) / PARTITION_FILE
        if not path.is_file():
            return None
        value = json.loads(path.read_text(encoding="utf-8")).get("previous_state_sha256")
        return str(value) if value is not None else None

    def is_stale(self, key: MonthKey) -> bool:
        """True when the month before `key` was re-materialized after `key` ran from it."""
        started_from = self.continued_from_digest(key)
        if started_from is None:
            return False
        return started_from != self.state_digest(key.previous())

    def stale_after(self, key: MonthKey, new_state_digest: str) -> list[str]:
        """Stored later months of `key`'s universe that a new state for `key` makes stale.

        The month right after `key` is stale when it started from a different state; every
        stored month after a stale one is stale too (its inputs are no longer current).
        """
        later = [
            MonthKey(m, key.universe) for m in self.stored_months(key.universe) if m > key.month
        ]
        if not later or later[0] != key.next():
            return []
        if self.continued_from_digest(later[0]) == new_state_digest:
            return []
        return [str(k) for k in later]

    def read_state(self, key: MonthKey) -> EngineState:
        """The engine state saved at the end of backtest partition `key`.

        A month whose own predecessor was re-materialized after it ran is stale: continuing
        from it would silently mix two histories, so it is an error naming the month to re-run.
        """
        if self.is_stale(key):
            msg = (
                f"backtest partition {key} is stale: month {key.previous()} was re-materialized "
                f"after it ran; re-materialize {key} (and the months after it) in order"
            )
            raise StateError(msg)
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
        stored = self.layout.stored_partitions(
            BACKTEST.path, (MONTH, UNIVERSE), {UNIVERSE: universe}
        )
        months = [MonthKey(dt.date.fromisoformat(dims[MONTH]), universe) for dims in stored]
        return sorted(k.month for k in months if (self.backtest_dir(k) / STATE_FILE).is_file())
