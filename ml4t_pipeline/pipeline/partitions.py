"""Backtest partitions: one per (month, universe), both read from <config dir>/universes.yaml.

The config directory is `config_dir()`: a resource setting (`build_defs(config_dir=...)`),
else $ML4T_CONFIG_DIR, else the repository's configs/. The month axis runs from `start_month`
to the last month of the data (the price file's latest bar), or to `end_month` when
universes.yaml sets one (the earlier of the two when both are known); without a price file at
load (no data yet) and no `end_month` it runs to the current month.

The partition key string of a run is ``"<month>|<universe>"`` (Dagster orders the dimensions
by name), e.g. ``"2024-02-01|core"``. Universes are data, not code: a name maps to explicit
asset ids or to a rule (`top_n_dollar_volume`), resolved against the price file at run time, point in time: a month's members are ranked on the
`formation_bars` bars before the month (`Universe.formation`).

Nothing is read at import time: `load_partition_spec` reads the file when called (by
`build_defs` when Dagster loads the code location, and by `BacktestConfigResource` in a run),
and `build_partitions` turns the spec into Dagster's partitions definitions.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import yaml

from ml4t_pipeline.errors import ConfigError, DataError

CONFIG_DIR_ENV = "ML4T_CONFIG_DIR"
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
UNIVERSES_NAME = "universes.yaml"
PIPELINE_NAME = "pipeline.yaml"


def config_dir(configured: str | None = None) -> Path:
    """`configured`, else $ML4T_CONFIG_DIR, else the repository's configs/ (read when called)."""
    return Path(configured or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR).absolute()


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
        return list(self.formation(prices, before=None).members)

    def formation(self, prices: pl.LazyFrame, *, before: dt.datetime | None) -> Formation:
        """The members for a month starting at `before`: explicit ids as they are; a rule ranks
        the assets on the `formation_bars` bars before it (None: the first bars of the file).

        Near the start of the data, with fewer than `formation_bars` bars before the month,
        the window is the file's first `formation_bars` bars (it reaches into the month:
        `Formation.reaches_into_month`, shown in the month's metadata)."""
        if self.top_n_dollar_volume is None:
            return Formation(members=tuple(self.select(prices)), window=None)
        stamps = pl.col("timestamp").unique().sort()
        earlier = (
            prices.filter(pl.col("timestamp") < before) if before is not None else prices.head(0)
        )
        window = earlier.select(stamps.tail(self.formation_bars)).collect().to_series()
        reaches = window.len() < self.formation_bars
        if reaches:
            window = prices.select(stamps.head(self.formation_bars)).collect().to_series()
        ranked = (
            prices.filter(pl.col("timestamp").is_in(window.implode()))
            .group_by("asset_id")
            .agg((pl.col("close") * pl.col("volume")).sum().alias("dollar_volume"))
            .sort(["dollar_volume", "asset_id"], descending=[True, False])
            .head(self.top_n_dollar_volume)
            .collect()
        )
        if ranked.is_empty():
            msg = f"universe {self.name!r}: the price file has no rows to rank"
            raise DataError(msg)
        return Formation(
            members=tuple(sorted(ranked["asset_id"].to_list())),
            window=(window.min(), window.max()),
            reaches_into_month=reaches and before is not None,
        )

    def definition(self) -> dict[str, Any]:
        """The universe as configured (what the run's config fingerprint covers)."""
        if self.top_n_dollar_volume is None:
            return {"asset_ids": sorted(self.asset_ids)}
        return {
            "top_n_dollar_volume": self.top_n_dollar_volume,
            "formation_bars": self.formation_bars,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Formation:
    """A universe's members for one month and, for a rule, the bars they were ranked on."""

    members: tuple[Any, ...]
    window: tuple[Any, Any] | None  # first and last timestamp ranked on (None: explicit ids)
    reaches_into_month: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionSpec:
    """The first month, the optional last month and the universes, as read from `source`."""

    source: Path
    start_month: dt.date
    universes: Mapping[str, Universe]
    end_month: dt.date | None = None

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


def _month(path: Path, name: str, value: Any) -> dt.date:
    try:
        month = dt.date.fromisoformat(str(value))
    except ValueError as exc:
        msg = f"{path}: {name} must be a date YYYY-MM-01, got {value!r}"
        raise ConfigError(msg) from exc
    if month.day != 1:
        msg = f"{path}: {name} must be the first day of a month, got {month}"
        raise ConfigError(msg)
    return month


def load_partition_spec(path: Path | None = None) -> PartitionSpec:
    """Read and parse universes.yaml (default: in `config_dir()`); every mistake is a
    `ConfigError` naming the file and key."""
    path = path if path is not None else config_dir() / UNIVERSES_NAME
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: cannot read the universes config: {exc}"
        raise ConfigError(msg) from exc
    if (
        not isinstance(raw, dict)
        or not {"start_month", "universes"} <= set(raw)
        or not set(raw) <= {"start_month", "end_month", "universes"}
    ):
        msg = (
            f"{path}: expected the keys 'start_month' and 'universes' (and optionally 'end_month')"
        )
        raise ConfigError(msg)
    start = _month(path, "start_month", raw["start_month"])
    end = _month(path, "end_month", raw["end_month"]) if "end_month" in raw else None
    if end is not None and end < start:
        msg = f"{path}: end_month {end} is before start_month {start}"
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
    return PartitionSpec(source=path, start_month=start, universes=parsed, end_month=end)


def last_data_month(prices_file: Path) -> dt.date | None:
    """The month of the price file's latest bar (naive timestamps are UTC), None without a
    file or rows. Only the timestamp column is read."""
    if not prices_file.is_file():
        return None
    try:
        latest = pl.scan_parquet(prices_file).select(pl.col("timestamp").max()).collect().item()
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"{prices_file}: cannot read the timestamp column to bound the months: {exc}"
        raise DataError(msg) from exc
    if isinstance(latest, dt.datetime) and latest.tzinfo is not None:
        latest = latest.astimezone(dt.UTC)
    if not isinstance(latest, dt.date):
        return None
    return dt.date(latest.year, latest.month, 1)


def last_month(spec: PartitionSpec, data_month: dt.date | None) -> dt.date | None:
    """The last month of the axis: the earlier of `end_month` and the data's last month."""
    known = [m for m in (spec.end_month, data_month) if m is not None]
    return min(known) if known else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelinePartitions:
    """The partitions definitions of one spec: months, universes, and (month, universe)."""

    months: dg.MonthlyPartitionsDefinition
    universes: dg.StaticPartitionsDefinition
    backtest: dg.MultiPartitionsDefinition


def build_partitions(
    spec: PartitionSpec, *, data_month: dt.date | None = None
) -> PipelinePartitions:
    """The partitions; the month axis ends at `last_month(spec, data_month)` (a data month
    before start_month is a `DataError`: the chain would have no month at all)."""
    last = last_month(spec, data_month)
    if last is not None and last < spec.start_month:
        msg = f"{spec.source}: the data ends in {last:%Y-%m}, before start_month {spec.start_month}"
        raise DataError(msg)
    months = dg.MonthlyPartitionsDefinition(
        start_date=spec.start_month.isoformat(),
        end_date=MonthKey(last, "_").end.date().isoformat() if last is not None else None,
    )
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
