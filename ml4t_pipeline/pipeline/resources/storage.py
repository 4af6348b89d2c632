"""Read access to stored backtest months: the chained engine state and the result tables.

The `ParquetIOManager` writes; this resource reads the same `StorageLayout` for what an IO
manager input does not express: "the month before this run's range, read as one version and
verified with its whole chain" and "every stored month of this universe, in order".
"""

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from ml4t_pipeline.errors import StateError
from ml4t_pipeline.pipeline.chain import StoredMonth, stale_months, verify_chain
from ml4t_pipeline.pipeline.io_manager import StorageError, StorageRoot, TableSet, read_table_set
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

    def read_month(self, key: MonthKey) -> StoredMonth | None:
        """The state and partition record of month `key`, both from the one version its link
        resolves to; None when the month is not stored."""
        path = self.backtest_dir(key)
        if not path.exists():
            return None
        try:
            texts = read_table_set(path, texts_only=(STATE_FILE, PARTITION_FILE)).texts
        except StorageError as exc:
            msg = f"backtest partition {key}: {exc}; re-materialize it"
            raise StateError(msg) from exc
        try:
            partition = json.loads(texts[PARTITION_FILE])
        except json.JSONDecodeError as exc:
            msg = f"backtest partition {key}: {PARTITION_FILE} is not JSON ({exc}); re-run it"
            raise StateError(msg) from exc
        return StoredMonth(key=key, state_json=texts[STATE_FILE], partition=partition)

    def continue_from(
        self,
        key: MonthKey,
        *,
        start_month: dt.date,
        fingerprint: str,
        instance: dg.DagsterInstance | None = None,
        checks: Sequence[str] = (),
    ) -> StoredMonth:
        """Month `key` to continue from, after `verify_chain` over every month up to it (with
        `instance`: none of the blocking `checks` of backtest failed on a month's latest
        materialization)."""
        if self.read_month(key) is None:
            msg = (
                f"backtest partition {key.next()} cannot start: month {key} (the month before "
                f"it, universe {key.universe!r}) is not stored; materialize backtest {key} "
                f"first, or backfill the range from {key.month:%Y-%m} (months of a universe "
                f"chain in order; looked in {self.backtest_dir(key)})"
            )
            raise StateError(msg)
        return verify_chain(
            key,
            start_month=start_month,
            fingerprint=fingerprint,
            read=self.read_month,
            failed_checks=lambda k: failed_blocking_checks(instance, k, checks) if instance else (),
        )

    def stale_months(
        self, universe: str, *, start_month: dt.date, fingerprint: str
    ) -> list[MonthKey]:
        """Stored months of `universe` that must be re-run (see `chain.stale_months`)."""
        return stale_months(
            universe,
            self.stored_months(universe),
            start_month=start_month,
            fingerprint=fingerprint,
            read=self.read_month,
        )

    def read_backtest(self, key: MonthKey) -> TableSet:
        return read_table_set(self.backtest_dir(key))

    def stored_months(self, universe: str) -> list[dt.date]:
        """Months of `universe` with a stored backtest, in order."""
        stored = self.layout.stored_partitions(
            BACKTEST.path, (MONTH, UNIVERSE), {UNIVERSE: universe}
        )
        months = [MonthKey(dt.date.fromisoformat(dims[MONTH]), universe) for dims in stored]
        return sorted(k.month for k in months if (self.backtest_dir(k) / STATE_FILE).is_file())


def failed_blocking_checks(
    instance: dg.DagsterInstance, key: MonthKey, checks: Sequence[str]
) -> list[str]:
    """Those of `checks` (blocking checks of `backtest`) whose latest evaluation of partition
    `key` failed and is not older than the partition's latest materialization."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=BACKTEST, asset_partitions=[key.key]), limit=1
    ).records
    if not latest:
        return []
    materialized_at = latest[0].timestamp
    failed = []
    for name in checks:
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(BACKTEST, name),
            limit=1,
            partition_filter=PartitionKeyFilter(key=key.key),
        )
        record = history[0] if history else None
        if (
            record is not None
            and record.status is AssetCheckExecutionRecordStatus.FAILED
            and record.event is not None
            and record.event.timestamp >= materialized_at
        ):
            failed.append(name)
    return failed
