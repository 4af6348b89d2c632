"""The storage layout, defined once: where an asset (partition) lives under the storage root.

`ParquetIOManager` writes through it, `ResultStore` reads through it, the demo prints it.
Hive-style, so ``pl.scan_parquet(root / "backtest/**/equity.parquet", hive_partitioning=True)``
reads every month of every universe::

    validated_prices.parquet                              unpartitioned frame
    feature_table/month=2024-01-01/universe=core.parquet  frame of a multi-dimension partition
    performance_summary/core.parquet                      frame of a one-dimension partition
    performance_summary/core.report.html                  its research report
    backtest/month=2024-01-01/universe=core/              a TableSet: equity.parquet, ...,
                                                          state.json (symlink to a version dir)
    .versions/backtest/universe=core.<random>/            the version directories behind links

Dimensions appear in name order (`month` before `universe`, as in Dagster's key strings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FRAME_SUFFIX = ".parquet"
REPORT_SUFFIX = ".report.html"
VERSIONS = ".versions"
# Members of a backtest month's TableSet besides its tables.
STATE_FILE = "state.json"  # the engine state at the month's end (the next month starts from it)
SUMMARY_FILE = "summary.json"  # the engine's run summary, without wall-clock numbers
PARTITION_FILE = "partition.json"  # where the month started from (cash, previous state digest)

Partition = str | Mapping[str, str] | None
"""None: unpartitioned; a string: a one-dimension key; a mapping: dimension -> key."""


def partition_parts(partition: Partition) -> list[str]:
    """Path components of a partition: ``["month=2024-01-01", "universe=core"]`` or ``[key]``."""
    if partition is None:
        return []
    if isinstance(partition, str):
        return [partition]
    return [f"{dim}={value}" for dim, value in sorted(partition.items())]


@dataclass(frozen=True, slots=True)
class StorageLayout:
    """Paths under one storage root. Asset keys are given as their path components."""

    root: Path

    def location(self, asset: Sequence[str], partition: Partition = None) -> Path:
        """Where one asset (partition) lives, without a suffix: a TableSet's directory."""
        return self.root.joinpath(*asset, *partition_parts(partition))

    def frame_file(self, asset: Sequence[str], partition: Partition = None) -> Path:
        """The Parquet file of a frame-valued asset (partition)."""
        path = self.location(asset, partition)
        return path.with_name(path.name + FRAME_SUFFIX)

    def report_file(self, asset: Sequence[str], partition: Partition = None) -> Path:
        """The research report written beside a frame-valued asset (partition)."""
        path = self.location(asset, partition)
        return path.with_name(path.name + REPORT_SUFFIX)

    def versions_dir(self, asset: Sequence[str]) -> Path:
        """Where the version directories behind an asset's TableSet links are kept."""
        return self.root / VERSIONS / asset[0]

    def stored_partitions(
        self, asset: Sequence[str], dimensions: Sequence[str], fixed: Mapping[str, str]
    ) -> list[dict[str, str]]:
        """The multi-dimension partitions of `asset` stored as TableSet directories whose
        dimensions in `fixed` have those values, as dimension -> key mappings, sorted by path."""
        base = self.root.joinpath(*asset)
        pattern = "/".join(f"{dim}={fixed.get(dim, '*')}" for dim in sorted(dimensions))
        found = []
        for path in sorted(base.glob(pattern)):
            parts = path.relative_to(base).parts
            found.append(dict(part.split("=", 1) for part in parts))
        return found
