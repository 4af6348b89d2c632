"""`ml4t-pipeline` command line: backtest, sweep, report, validate, sample-data, demo.

User mistakes (a bad config, bad data, an unusable `--out`) print one `error:` line on stderr
(values cut to ~200 characters) and exit with status 2, before anything is written; a
traceback means a bug.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml4t_pipeline.errors import Ml4tError, clipped

MAX_MESSAGE = 2000
"""The most characters of one error message the CLI prints (a last guard; values in messages
are already cut to ~200 characters where they are written)."""


class UsageError(Ml4tError):
    """A command-line argument that cannot work, found before anything runs."""


def output_folder(value: str, flag: str = "--out") -> Path:
    """The folder `value` names, checked before a run: not empty, not a file, not under a
    file, and writable (the nearest existing folder accepts a new entry). Nothing is left
    behind by the check."""
    if not value.strip():
        msg = f"{flag} must name a folder, got an empty string"
        raise UsageError(msg)
    out = Path(value)
    try:
        if out.exists() and not out.is_dir():
            msg = f"{flag} {clipped(value)} is an existing file, not a folder"
            raise UsageError(msg)
        parent = out
        while not parent.exists():  # the nearest existing folder (or file) at or above `out`
            parent = parent.parent
        if not parent.is_dir():
            msg = f"{flag} {clipped(value)} is under {clipped(str(parent))}, which is a file"
            raise UsageError(msg)
        # permission bits, read-only mounts, ACLs: only trying tells
        os.rmdir(tempfile.mkdtemp(prefix=".ml4t-probe-", dir=parent))
    except OSError as exc:
        msg = f"{flag} {clipped(value)}: cannot write there ({exc.strerror or exc})"
        raise UsageError(msg) from exc
    return out


def _progress_printer(unit: str = "bars") -> Any:
    """A progress bar on stderr for runs longer than ~2 s; silent when stderr is not a TTY."""
    if not sys.stderr.isatty():
        return None
    start = time.perf_counter()

    def show(done: int, total: int) -> None:
        if time.perf_counter() - start < 2.0:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _cmd_backtest(args: argparse.Namespace) -> int:
    from ml4t_pipeline.report.drawing import InProcess, for_this_machine

    # started first: the chart helper imports matplotlib while the backtest loads and runs
    with InProcess() if args.no_report else for_this_machine() as drawing:
        return _backtest(args, drawing)


def _backtest(args: argparse.Namespace, drawing: Any) -> int:
    from ml4t_pipeline.engine import load_run_config, run_backtest

    out = output_folder(args.out)
    config = load_run_config(args.config)
    validate_s = 0.0
    data_warnings: list[str] | str
    if config.execution.validate and not args.no_validate:
        started = time.perf_counter()
        data_warnings = _validate_files(
            config.data.prices,
            config.data.signals,
            config.data.context,
            corporate_actions=config.data.corporate_actions,
            policy=config.validation_policy(),
        )
        validate_s = time.perf_counter() - started
    else:
        skipped_by = "--no-validate" if args.no_validate else "execution.validate: false"
        data_warnings = f"not checked: validation skipped ({skipped_by})"
    result = run_backtest(config, progress=_progress_printer(), panel_cache=not args.no_cache)
    result.extra["engine_wall_s"] = result.wall_s
    result.extra["validate_wall_s"] = validate_s
    result.extra["data_warnings"] = data_warnings
    try:
        result.write(out, report=not args.no_report, drawing=drawing)
    except OSError as exc:
        msg = f"cannot write the results to {clipped(str(out))}: {exc.strerror or exc}"
        raise UsageError(msg) from exc
    result.wall_s = time.perf_counter() - args.started  # the whole command, results written
    print(json.dumps(result.summary()))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ml4t_pipeline.engine import load_run_config
    from ml4t_pipeline.engine.feed.prepared import panel_cache_dir
    from ml4t_pipeline.engine.yaml_load import load_yaml
    from ml4t_pipeline.sweep.grid import load_grid
    from ml4t_pipeline.sweep.run import plan_variants, run_sweep
    from ml4t_pipeline.sweep.write import write_sweep

    out = output_folder(args.out)
    config = load_run_config(args.config)
    grid = load_grid(Path(args.grid))
    variants = grid.variants(load_yaml(Path(args.config)), base_dir=Path(args.config).parent)
    plan_variants(variants)  # the columns each variant names, before the inputs are validated
    if config.execution.validate and not args.no_validate:  # one input set for every variant
        _validate_files(
            config.data.prices,
            config.data.signals,
            config.data.context,
            corporate_actions=config.data.corporate_actions,
            policy=config.validation_policy(),
        )
    with tempfile.TemporaryDirectory(prefix="ml4t-sweep-panel-") as scratch:
        cache = Path(scratch) if args.no_cache else panel_cache_dir()
        sweep = run_sweep(
            grid,
            variants,
            workers=args.workers,
            n_blocks=args.blocks,
            cache=cache,
            progress=_progress_printer("variants"),
        )
    try:
        write_sweep(out, sweep, page=not args.no_report)
    except OSError as exc:
        msg = f"cannot write the sweep to {clipped(str(out))}: {exc.strerror or exc}"
        raise UsageError(msg) from exc
    line = sweep.line() | {"wall_s": time.perf_counter() - args.started}
    print(json.dumps(line))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ml4t_pipeline.report import write_report

    started = time.perf_counter()
    try:
        path = write_report(args.results)
    except OSError as exc:
        msg = f"cannot write the report into {clipped(args.results)}: {exc.strerror or exc}"
        raise UsageError(msg) from exc
    print(json.dumps({"report": str(path), "wall_s": time.perf_counter() - started}))
    return 0


def _validate_files(
    prices: Path,
    signals: Path | None,
    context: Path | None,
    *,
    corporate_actions: Path | None = None,
    policy: Any = None,
) -> list[str]:
    """Full validation before a backtest, skipped for files that passed it unchanged.

    Returns the split warnings the run summary repeats (`ValidationReport.split_warnings`),
    taken from the cache entry when validation is skipped (never recomputed)."""
    import ml4t_pipeline.validation as validation
    from ml4t_pipeline.validation import cache

    files = [p for p in (prices, signals, context, corporate_actions) if p is not None]
    policy = policy if policy is not None else validation.CoveragePolicy()
    found = cache.lookup(files, policy=repr(policy))
    if found.hit:
        return list(found.warnings)
    report = validation.validate_inputs(
        prices=prices,
        signals=signals,
        context=context,
        corporate_actions=corporate_actions,
        policy=policy,
    )
    for failure in report.warnings:
        print(f"warning: {failure.message()}", file=sys.stderr)
    report.raise_if_failed()
    repeated = report.split_warnings()
    found.remember(repeated)
    return list(repeated)


def _cmd_validate(args: argparse.Namespace) -> int:
    from ml4t_pipeline.engine import load_run_config
    from ml4t_pipeline.validation import validate_inputs

    config = load_run_config(args.config)
    report = validate_inputs(
        prices=config.data.prices,
        signals=config.data.signals,
        context=config.data.context,
        corporate_actions=config.data.corporate_actions,
        policy=config.validation_policy(),
    )
    for failure in (*report.failures, *report.tolerated):
        print(f"{failure.severity}: {failure.message()}", file=sys.stderr)
    print(
        json.dumps(
            {
                "ok": report.ok,
                "errors": len(report.errors),
                "warnings": len(report.warnings),
                "tolerated": report.tolerated_counts(),
                "rows_checked": report.rows_checked,
            }
        )
    )
    return 0 if report.ok else 1


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from ml4t_pipeline.sample_data import SampleSpec, write_sample_data

    spec = SampleSpec(
        assets=args.assets,
        days=args.days,
        scenario=args.scenario,
        seed=args.seed,
        skill=args.skill,
        start=dt.date.fromisoformat(args.start),
    )
    paths = write_sample_data(spec, output_folder(args.out))
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ml4t_pipeline.pipeline.demo import run_demo

    return run_demo(Path(args.data_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml4t-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bt = sub.add_parser("backtest", help="run a backtest described by a YAML config")
    bt.add_argument("--config", required=True, help="run YAML (data, execution, strategy, risk)")
    bt.add_argument("--out", required=True, help="output folder for the result tables")
    bt.add_argument("--no-validate", action="store_true", help="skip the input validation pass")
    bt.add_argument(
        "--no-report", action="store_true", help="do not write report.html (saves the charts)"
    )
    bt.add_argument(
        "--no-cache",
        action="store_true",
        help="decode the inputs afresh; neither read nor keep the prepared panel "
        "($ML4T_PANEL_CACHE, default ~/.cache/ml4t-pipeline/panels)",
    )
    bt.set_defaults(func=_cmd_backtest)

    sw = sub.add_parser("sweep", help="run a grid of config variants on one loaded panel")
    sw.add_argument("--config", required=True, help="the base run YAML")
    sw.add_argument("--grid", required=True, help="YAML: dotted config paths -> lists of values")
    sw.add_argument("--out", required=True, help="output folder of the sweep")
    sw.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: the core count)"
    )
    sw.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="CSCV blocks for the PBO (even; default: the grid's blocks, else 10)",
    )
    sw.add_argument("--no-validate", action="store_true", help="skip the input validation pass")
    sw.add_argument(
        "--no-report", action="store_true", help="no sweep page and no tear sheet of the best"
    )
    sw.add_argument(
        "--no-cache", action="store_true", help="keep the prepared panel for this sweep only"
    )
    sw.set_defaults(func=_cmd_sweep)

    rp = sub.add_parser("report", help="(re)write report.html of a backtest's results folder")
    rp.add_argument("--results", required=True, help="a backtest's --out folder")
    rp.set_defaults(func=_cmd_report)

    va = sub.add_parser("validate", help="validate the inputs named by a run config")
    va.add_argument("--config", required=True)
    va.set_defaults(func=_cmd_validate)

    sd = sub.add_parser("sample-data", help="write synthetic prices/signals/context Parquet")
    sd.add_argument("--out", required=True)
    sd.add_argument("--assets", type=int, default=50)
    sd.add_argument("--days", type=int, default=252)
    sd.add_argument("--scenario", default="mixed")
    sd.add_argument("--seed", type=int, default=2)
    sd.add_argument("--skill", type=float, default=0.55)
    sd.add_argument("--start", default="2020-01-01", help="first business day, YYYY-MM-DD")
    sd.set_defaults(func=_cmd_sample_data)

    de = sub.add_parser("demo", help="materialize the demo asset chain into DAGSTER_HOME")
    de.add_argument("--data-dir", required=True)
    de.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    args.started = started
    try:
        code: int = args.func(args)
    except Ml4tError as exc:
        print(f"error: {clipped(str(exc), MAX_MESSAGE)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
