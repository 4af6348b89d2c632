"""`parameter_sweep`: a grid of config variants over a universe's whole history, one partition
per (sweep, universe).

Each file `<config dir>/sweeps/<name>.yaml` is a grid (`ml4t_pipeline.sweep.grid`: dotted
paths into pipeline.yaml's run config mapped to lists of values, `mode`, `select`, `heatmap`,
`blocks`). A partition runs every variant on the universe's inputs from the first month to the
last month of the data, cut the way its month chain cuts them (`universe_inputs`: each
month's held assets, signals for its members only), and publishes the sweep's folder whole:
variants.parquet, equity.parquet, overfitting.json, best.yaml, best/ (the best variant's
result and tear sheet) and sweep.html. The materialization shows the variants table, the PBO
and the deflated Sharpe ratio of the best variant, and links the pages.

One run per partition (`BackfillPolicy.multi_run(1)`), so a backfill of sweeps x universes is
as many runs as the instance's run launcher spreads (a cluster launcher: one pod each). Inside
a run the variants run in worker processes on one decoded panel (`sweep.run`).
"""

import hashlib
import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from ml4t_pipeline.errors import ConfigError, Ml4tError
from ml4t_pipeline.keys import TIMESTAMP
from ml4t_pipeline.pipeline.assets.features import chain_beta_apis, deterministic
from ml4t_pipeline.pipeline.assets.summary import REPORTS_GROUP
from ml4t_pipeline.pipeline.checks import require_passed_input_checks
from ml4t_pipeline.pipeline.partitions import UNIVERSE, MonthKey
from ml4t_pipeline.pipeline.resources import BacktestConfigResource, ResultStore
from ml4t_pipeline.pipeline.universe_inputs import universe_inputs
from ml4t_pipeline.sweep.grid import Grid, load_grid
from ml4t_pipeline.sweep.run import Sweep, run_sweep
from ml4t_pipeline.sweep.write import variants_frame, write_sweep

PARAMETER_SWEEP = "parameter_sweep"
SWEEP = "sweep"  # the partition dimension of the sweep files
SWEEPS_DIR = "sweeps"
TOP_VARIANTS = 20  # rows of the variants table in the materialization's metadata
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def sweep_files(config_dir: Path) -> dict[str, Path]:
    """The sweep files of the config folder, by name (the file's stem)."""
    folder = config_dir / SWEEPS_DIR
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        if not path.stem or not set(path.stem) <= _NAME_CHARS:
            msg = f"{path}: a sweep's file name is its partition key: letters, digits, _ and -"
            raise ConfigError(msg)
        found[path.stem] = path
    return found


def sweeps_code_version(grids: Mapping[str, Grid], run_config_version: str) -> str:
    """A digest of every sweep's grid and of the run config they vary (its code version)."""
    described = {
        name: {
            "paths": list(grid.paths),
            "values": {p: list(v) for p, v in grid.values.items()},
            "mode": grid.mode,
            "select": grid.select,
            "heatmap": list(grid.heatmap),
            "blocks": grid.blocks,
        }
        for name, grid in sorted(grids.items())
    }
    text = json.dumps([run_config_version, described], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sweep_key(partition_key: str) -> dict[str, str]:
    """{sweep, universe} of a partition key as Dagster hands it over (a MultiPartitionKey, or
    the plain "name|universe" of the CLI: dimensions in name order)."""
    if isinstance(partition_key, dg.MultiPartitionKey):
        return dict(partition_key.keys_by_dimension)
    sweep, _, universe = partition_key.partition("|")
    return {SWEEP: sweep, UNIVERSE: universe}


def _months(first: pl.Series, start_month: MonthKey) -> list[Any]:
    """Every month from the chain's first to the data's last."""
    last = first.max()
    months = []
    key = start_month
    while key.start <= last:  # type: ignore[operator]
        months.append(key.month)
        key = key.next()
    return months


def materialize_sweep(
    context: dg.AssetExecutionContext,
    backtest_config: BacktestConfigResource,
    store: ResultStore,
    prices: pl.LazyFrame,
    signals: pl.LazyFrame,
    context_frame: pl.LazyFrame,
    corporate_actions: pl.DataFrame,
) -> dg.MaterializeResult[None]:
    dimensions = sweep_key(context.partition_key)
    name, universe = dimensions[SWEEP], dimensions[UNIVERSE]
    try:
        require_passed_input_checks(context.instance)
        files = sweep_files(backtest_config.run_config_file().parent)
        if name not in files:
            msg = f"no sweep file {name}.yaml in {backtest_config.run_config_file().parent / SWEEPS_DIR}"
            raise ConfigError(msg)
        grid = load_grid(files[name])
        spec = backtest_config.partition_spec()
        stamps = prices.select(pl.col(TIMESTAMP)).collect()[TIMESTAMP]
        months = _months(stamps, MonthKey(spec.start_month, universe))
        inputs = universe_inputs(
            spec, universe, months, prices=prices, signals=signals, context=context_frame
        )
        base = backtest_config.run_config_yaml()
        with tempfile.TemporaryDirectory(prefix=".sweep-inputs-", dir=store.root) as scratch:
            folder = Path(scratch)
            data = {}
            for role, frame in (
                ("prices", inputs.prices),
                ("signals", inputs.signals),
                ("context", inputs.context),
                ("corporate_actions", corporate_actions),
            ):
                if frame.height:
                    frame.write_parquet(folder / f"{role}.parquet")
                    data[role] = str(folder / f"{role}.parquet")
            variants = grid.variants({**base, "data": data}, base_dir=folder)
            sweep = run_sweep(grid, variants, cache=folder / "panels")
            out = store.layout.location([PARAMETER_SWEEP], dimensions)
            write_sweep(out, sweep)
    except Ml4tError as exc:
        raise deterministic(exc) from exc
    return dg.MaterializeResult(metadata=sweep_metadata(sweep, out, months))


def sweep_metadata(sweep: Sweep, out: Path, months: list[Any]) -> dict[str, Any]:
    best = sweep.variants[sweep.best]
    figures = sweep.outcomes[sweep.best].figures
    return {
        "months": f"{months[0]:%Y-%m} .. {months[-1]:%Y-%m} ({len(months)})",
        "n_trials": len(sweep.variants),
        "best_variant": best.number,
        "best_values": dg.MetadataValue.json(dict(best.values)),
        f"best_{sweep.grid.select}": _plain(figures.get(sweep.grid.select)),
        "pbo": _plain(sweep.pbo.pbo if sweep.pbo is not None else None),
        "pbo_note": sweep.pbo_note or "",
        "deflated_sharpe": _plain(sweep.deflated.deflated_sharpe if sweep.deflated else None),
        "deflated_sharpe_note": sweep.deflated_note or "",
        "variants": _variants_table(sweep),
        "sweep_page": dg.MetadataValue.path(str(out / "sweep.html")),
        "sweep_page_url": dg.MetadataValue.url((out / "sweep.html").as_uri()),
        "best_report": dg.MetadataValue.path(str(out / "best" / "report.html")),
        "folder": dg.MetadataValue.path(str(out)),
    }


def _plain(value: Any) -> Any:
    """A figure as metadata: a float, or the text "undefined" (NaN and None are not JSON)."""
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return "undefined"


def _variants_table(sweep: Sweep) -> dg.MetadataValue:
    """The best `TOP_VARIANTS` variants by the selection metric, their values and figures."""
    frame = variants_frame(sweep)
    select = sweep.grid.select
    figures = [select, "sharpe", "total_return", "max_drawdown", "final_equity", "trades"]
    wanted = ["variant", *sweep.grid.paths, *(c for c in figures if c in frame.columns)]
    shown = list(dict.fromkeys(wanted))
    frame = frame.sort([select, "variant"], descending=[True, False], nulls_last=True)
    frame = frame.select(shown).head(TOP_VARIANTS)
    columns = [
        dg.TableColumn(
            name=c,
            type="float"
            if frame[c].dtype.is_float()
            else "int"
            if frame[c].dtype.is_integer()
            else "string",
        )
        for c in frame.columns
    ]
    records = [
        dg.TableRecord(
            {
                k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                for k, v in row.items()
            }
        )
        for row in frame.iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def parameter_sweep_asset(
    sweeps: list[str], universes: dg.StaticPartitionsDefinition, *, code_version: str | None
) -> dg.AssetsDefinition:
    """`parameter_sweep` over (sweep, universe) partitions, one run per partition."""
    partitions = dg.MultiPartitionsDefinition(
        {SWEEP: dg.StaticPartitionsDefinition(sweeps), UNIVERSE: universes}
    )
    with chain_beta_apis():  # backfill_policy
        return _sweep_asset(partitions, code_version)


def _sweep_asset(
    partitions: dg.MultiPartitionsDefinition, code_version: str | None
) -> dg.AssetsDefinition:
    return dg.asset(
        name=PARAMETER_SWEEP,
        partitions_def=partitions,
        group_name=REPORTS_GROUP,
        kinds={"numpy"},
        code_version=code_version,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
        ins={
            "prices": dg.AssetIn("validated_prices"),
            "signals": dg.AssetIn("validated_signals"),
            "context_frame": dg.AssetIn("validated_context"),
            "corporate_actions": dg.AssetIn("validated_corporate_actions"),
        },
        description=__doc__,
    )(materialize_sweep)
