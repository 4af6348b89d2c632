"""Backtest partitions: one per (month, universe), both read from configs/universes.yaml.

The partition key string of a run is ``"<month>|<universe>"`` (Dagster orders the dimensions
by name), e.g. ``"2024-02-01|core"``. Universes are data, not code: a name maps to explicit
asset ids or to a rule (`top_n_dollar_volume`), resolved against the price file at run time.

Nothing is read at import time: `load_partition_spec` reads the file when called (by
`build_defs` when Dagster loads the code location, and by `BacktestConfigResource` in a run),
and `build_partitions` turns the spec into Dagster's partitions definitions.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import yaml

from ml4t_pipeline.errors import ConfigError, DataError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
UNIVERSES_FILE = CONFIG_DIR / "universes.yaml"
"""The default universes config (`build_defs(universes_path=...)` takes another)."""
MONTH = "month"
UNIVERSE = "universe"
DEFAULT_FORMATION_BARS = 20
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Universe:
    """A named set of assets: explicit ids, or the top N by early dollar volume."""

    name: str
    asset_ids: tuple[str, ...] = ()
    top_n_dollar_volume: int | None = None
    formation_bars: int = DEFAULT_FORMATION_BARS

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            msg = f"universes.{self.name}: a name may hold letters, digits, '_' and '-' only"
            raise ConfigError(msg)
        if bool(self.asset_ids) == (self.top_n_dollar_volume is not None):
            msg = f"universes.{self.name}: give either a list of asset ids or top_n_dollar_volume"
            raise ConfigError(msg)
        for key, value in (
            ("top_n_dollar_volume", self.top_n_dollar_volume),
            ("formation_bars", self.formation_bars),
        ):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                msg = f"universes.{self.name}.{key} must be an integer >= 1, got {value!r}"
                raise ConfigError(msg)

    def select(self, prices: pl.LazyFrame) -> list[Any]:
        """The universe's asset ids as typed in the price file (ids in YAML match by their
        text, so `7` finds integer id 7), sorted; every explicit id must have prices."""
        ids = pl.col("asset_id")
        if self.top_n_dollar_volume is None:
            found = (
                prices.select(ids.unique())
                .filter(ids.cast(pl.String).is_in(list(self.asset_ids)))
                .collect()
                .to_series()
            )
            missing = sorted(set(self.asset_ids) - {str(a) for a in found.to_list()})
            if missing:
                msg = (
                    f"universe {self.name!r}: {len(missing)} asset id(s) have no prices, "
                    f"e.g. {missing[:5]}"
                )
                raise DataError(msg)
            return sorted(found.to_list())
        first_bars = (
            prices.select(pl.col("timestamp").unique().sort().head(self.formation_bars))
            .collect()
            .to_series()
        )
        ranked = (
            prices.filter(pl.col("timestamp").is_in(first_bars.implode()))
            .group_by("asset_id")
            .agg((pl.col("close") * pl.col("volume")).sum().alias("dollar_volume"))
            .sort(["dollar_volume", "asset_id"], descending=[True, False])
            .head(self.top_n_dollar_volume)
            .collect()
        )
        if ranked.is_empty():
            msg = f"universe {self.name!r}: the price file has no rows to rank"
            raise DataError(msg)
        return sorted(ranked["asset_id"].to_list())


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionSpec:
    """The first month and the universes, as read from `source`."""

    source: Path
    start_month: dt.date
    universes: Mapping[str, Universe]

    def universe(self, name: str) -> Universe:
        try:
            return self.universes[name]
        except KeyError:
            known = ", ".join(self.universes)
            msg = f"{self.source}: no universe {name!r} under 'universes' (it has: {known})"
            raise ConfigError(msg) from None


def _universe(name: str, raw: Any) -> Universe:
    if isinstance(raw, list):
        return Universe(name=name, asset_ids=tuple(str(a) for a in raw))
    if not isinstance(raw, dict):
        msg = f"universes.{name} must be a list of asset ids or a mapping with a rule"
        raise ConfigError(msg)
    unknown = sorted(set(raw) - {"top_n_dollar_volume", "formation_bars"})
    if unknown:
        msg = f"universes.{name}: unknown key(s) {unknown} (allowed: formation_bars, top_n_dollar_volume)"
        raise ConfigError(msg)
    return Universe(
        name=name,
        top_n_dollar_volume=raw.get("top_n_dollar_volume"),
        formation_bars=raw.get("formation_bars", DEFAULT_FORMATION_BARS),
    )


def load_partition_spec(path: Path = UNIVERSES_FILE) -> PartitionSpec:
    """Read and parse universes.yaml; every mistake is a `ConfigError` naming the file and key."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: cannot read the universes config: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(raw, dict) or set(raw) != {"start_month", "universes"}:
        msg = f"{path}: expected exactly the keys 'start_month' and 'universes'"
        raise ConfigError(msg)
    try:
        start = dt.date.fromisoformat(str(raw["start_month"]))
    except ValueError as exc:
        msg = f"{path}: start_month must be a date YYYY-MM-01, got {raw['start_month']!r}"
        raise ConfigError(msg) from exc
    if start.day != 1:
        msg = f"{path}: start_month must be the first day of a month, got {start}"
        raise ConfigError(msg)
    universes = raw["universes"]
    if not isinstance(universes, dict) or not universes:
        msg = f"{path}: universes must map at least one name to assets or a rule"
        raise ConfigError(msg)
    try:
        parsed = {str(k): _universe(str(k), v) for k, v in universes.items()}
    except ConfigError as exc:
        msg = f"{path}: {exc}"
        raise ConfigError(msg) from exc
    return PartitionSpec(source=path, start_month=start, universes=parsed)


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelinePartitions:
    """The partitions definitions of one spec: months, universes, and (month, universe)."""

    months: dg.MonthlyPartitionsDefinition
    universes: dg.StaticPartitionsDefinition
    backtest: dg.MultiPartitionsDefinition


def build_partitions(spec: PartitionSpec) -> PipelinePartitions:
    months = dg.MonthlyPartitionsDefinition(start_date=spec.start_month.isoformat())
    universes = dg.StaticPartitionsDefinition(list(spec.universes))
    return PipelinePartitions(
        months=months,
        universes=universes,
        backtest=dg.MultiPartitionsDefinition({MONTH: months, UNIVERSE: universes}),
    )


@dataclass(frozen=True, slots=True)
class MonthKey:
    """One backtest partition: a calendar month and a universe name."""

    month: dt.date
    universe: str

    @property
    def start(self) -> dt.datetime:
        return dt.datetime(self.month.year, self.month.month, 1, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """First instant of the next month (bars in [start, end) belong to this month)."""
        year, month = divmod(self.month.month, 12)
        return dt.datetime(self.month.year + year, month + 1, 1, tzinfo=dt.UTC)

    def previous(self) -> MonthKey:
        year, month = (
            (self.month.year, self.month.month - 1)
            if self.month.month > 1
            else (self.month.year - 1, 12)
        )
        return MonthKey(dt.date(year, month, 1), self.universe)

    def next(self) -> MonthKey:
        return MonthKey(self.end.date(), self.universe)

    @property
    def dimensions(self) -> dict[str, str]:
        """Dimension -> key, as Dagster's multi-partition key and the storage layout name it."""
        return {MONTH: self.month.isoformat(), UNIVERSE: self.universe}

    @property
    def key(self) -> str:
        """The Dagster partition key string, dimensions in name order."""
        return str(dg.MultiPartitionKey(self.dimensions))

    def __str__(self) -> str:
        return self.key


def month_key(partition_key: str) -> MonthKey:
    """Parse a partition key as Dagster hands it over (a plain "2024-02-01|core" from the CLI).

    Universe names hold no "|", so the string splits once, month first (dimension name order).
    """
    if isinstance(partition_key, dg.MultiPartitionKey):
        parts = partition_key.keys_by_dimension
        month, universe = parts[MONTH], parts[UNIVERSE]
    else:
        month, _, universe = str(partition_key).partition("|")
    try:
        first = dt.date.fromisoformat(month)
    except ValueError:
        first = None
    if first is None or first.day != 1 or not _NAME.match(universe):
        msg = f"partition key {partition_key!r} is not '<YYYY-MM-01>|<universe>'"
        raise ConfigError(msg)
    return MonthKey(first, universe)
