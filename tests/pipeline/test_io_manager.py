"""The Parquet IO manager: round trips, layout, and atomic replacement (a failure mid-write
leaves the previous version intact and no debris)."""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ml4t_pipeline.pipeline.io_manager import (
    ParquetIOManager,
    StorageError,
    TableSet,
    read_table_set,
    remove_debris,
    write_frame_atomic,
    write_table_set_atomic,
)
from ml4t_pipeline.pipeline.layout import StorageLayout

V1 = pl.DataFrame({"x": [1, 2, 3], "y": [0.5, 1.5, 2.5]})
V2 = pl.DataFrame({"x": [9, 9], "y": [9.0, 9.0]})


def _failing_write(fail_on_call: int) -> Any:
    """A stand-in for DataFrame.write_parquet that writes half a file, then dies, on call n."""
    real = pl.DataFrame.write_parquet
    calls = {"n": 0}

    def write(self: pl.DataFrame, file: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == fail_on_call:
            Path(file).write_bytes(b"PAR1 half a file")
            msg = "disk full"
            raise OSError(msg)
        real(self, file, *args, **kwargs)

    return write


def test_a_failed_frame_write_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "prices.parquet"
    write_frame_atomic(V1, target)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write(1))
    with pytest.raises(OSError, match="disk full"):
        write_frame_atomic(V2, target)
    monkeypatch.undo()
    assert pl.read_parquet(target).equals(V1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prices.parquet"]
    write_frame_atomic(V2, target)
    assert pl.read_parquet(target).equals(V2)


def test_a_failed_table_set_write_leaves_the_previous_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = StorageLayout(tmp_path / "store")
    target = layout.location(("backtest",), {"universe": "core", "month": "2024-01-01"})
    versions = layout.versions_dir(("backtest",))
    assert target == tmp_path / "store" / "backtest" / "month=2024-01-01" / "universe=core"
    assert versions == tmp_path / "store" / ".versions" / "backtest"
    first = TableSet(tables={"equity": V1, "fills": V1}, texts={"state.json": '{"v": 1}'})
    write_table_set_atomic(first, target, versions=versions)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", _failing_write(2))
    second = TableSet(tables={"equity": V2, "fills": V2}, texts={"state.json": '{"v": 2}'})
    with pytest.raises(OSError, match="disk full"):
        write_table_set_atomic(second, target, versions=versions)
    monkeypatch.undo()
    kept = read_table_set(target)
    assert kept.tables["equity"].equals(V1)
    assert kept.tables["fills"].equals(V1)
    assert kept.texts == {"state.json": '{"v": 1}'}
    assert len(list(versions.iterdir())) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["universe=core"]

    write_table_set_atomic(second, target, versions=versions)
    assert read_table_set(target).texts == {"state.json": '{"v": 2}'}
    # the replaced version stays for readers until it is older than DEBRIS_AGE_S
    assert len(list(versions.iterdir())) == 2
    remove_debris(layout.location(("backtest",)), versions, min_age_s=-1.0)
    assert [p.resolve() for p in versions.iterdir()] == [target.resolve()]
    assert layout.stored_partitions(("backtest",), ("month", "universe"), {"universe": "core"}) == [
        {"month": "2024-01-01", "universe": "core"}
    ]
    assert layout.stored_partitions(("backtest",), ("month", "universe"), {"universe": "x"}) == []


def test_the_io_manager_stores_frames_and_table_sets(tmp_path: Path) -> None:
    letters = dg.StaticPartitionsDefinition(["a", "b"])

    @dg.asset
    def frame() -> pl.DataFrame:
        return V1

    @dg.asset(partitions_def=letters)
    def bundle(context: dg.AssetExecutionContext, frame: pl.LazyFrame) -> TableSet:
        doubled = frame.with_columns(pl.col("x") * 2).collect()
        return TableSet(tables={"doubled": doubled}, texts={"key.txt": context.partition_key})

    @dg.asset(partitions_def=letters)
    def reader(bundle: TableSet) -> pl.DataFrame:
        return bundle.tables["doubled"].with_columns(pl.lit(bundle.texts["key.txt"]).alias("k"))

    io = ParquetIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        dg.materialize([frame], instance=instance, resources={"io_manager": io})
        result = dg.materialize(
            [frame, bundle, reader],
            selection=[bundle, reader],
            partition_key="b",
            instance=instance,
            resources={"io_manager": io},
        )
    assert result.success
    assert pl.read_parquet(tmp_path / "frame.parquet").equals(V1)
    assert read_table_set(tmp_path / "bundle" / "b").tables["doubled"]["x"].to_list() == [2, 4, 6]
    assert pl.read_parquet(tmp_path / "reader" / "b.parquet")["k"].to_list() == ["b"] * 3
    meta = result.asset_materializations_for_node("bundle")[0].metadata
    assert meta["rows_doubled"].value == 3


def test_the_io_manager_refuses_values_it_cannot_store_without_pickle(tmp_path: Path) -> None:
    @dg.asset
    def mystery() -> dict[str, int]:
        return {"a": 1}

    with (
        dg.instance_for_test() as instance,
        pytest.raises(StorageError, match="cannot store a dict"),
    ):
        dg.materialize(
            [mystery],
            instance=instance,
            resources={"io_manager": ParquetIOManager(base_dir=str(tmp_path))},
        )
