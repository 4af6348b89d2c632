"""Step 1 of the feed: an input (a Parquet file or an in-memory frame) read column by column.

A `Table` never reads a column the run does not use. A Parquet file is opened once (its footer
gives the schema and the row count without reading data); text `asset_id` columns are read as
Parquet dictionaries, so millions of rows arrive as small integer indices into a few thousand
strings. Columns are read in record batches, or decoded once, multi-threaded, with `preload`
when the whole run fits in one chunk, and handed back to the memory pool with `release`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeAlias

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ml4t_pipeline.engine.feed.columns import id_kind, is_number, is_text
from ml4t_pipeline.errors import DataError, shown
from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP

Source: TypeAlias = str | Path | pl.DataFrame | pl.LazyFrame | pa.Table
"""An input: a Parquet path, or a frame already in memory."""
BATCH_ROWS = 1 << 20


def _refuse_repeated_names(schema: pa.Schema, name: str) -> None:
    """Two columns of one name: which one a reader gets is arbitrary, so neither is read."""
    repeated = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if repeated:
        msg = (
            f"{name}: column name(s) {', '.join(shown(n) for n in repeated)} appear more than "
            "once; every column needs its own name"
        )
        raise DataError(msg)


class Table:
    """A column-projected input read in record batches (Parquet file, or in-memory frame)."""

    def __init__(self, source: Source, role: str) -> None:
        self.role = role
        self.name = str(source) if isinstance(source, str | Path) else f"<{role} frame>"
        self._file: pq.ParquetFile | None = None
        self._table: pa.Table | None = None
        if isinstance(source, str | Path):
            path = Path(source)
            if not path.is_file():
                msg = f"{role} file not found: {path}"
                raise DataError(msg)
            try:
                self._file = pq.ParquetFile(path)
                schema = self._file.schema_arrow
                _refuse_repeated_names(schema, self.name)
                if self._text_ids(schema):
                    self._file = pq.ParquetFile(  # (the footer already read is reused)
                        path, read_dictionary=[ASSET_ID], metadata=self._file.metadata
                    )
            except (OSError, pa.ArrowException) as exc:
                msg = f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})"
                raise DataError(msg) from exc
        else:
            if isinstance(source, pl.LazyFrame):
                source = source.collect()
            if isinstance(source, pl.DataFrame):
                source = source.to_arrow()
            self._table = source
            schema = source.schema
            _refuse_repeated_names(schema, self.name)
        self.schema: pa.Schema = schema
        self.columns: tuple[str, ...] = tuple(schema.names)
        self._preloaded: list[pa.RecordBatch] | None = None

    @staticmethod
    def _text_ids(schema: pa.Schema) -> bool:
        return ASSET_ID in schema.names and is_text(schema.field(ASSET_ID).type)

    def id_kind(self) -> str:
        """Whether the asset_id column holds "text" or "integer" ids (`columns.id_kind`)."""
        return id_kind(self.schema.field(ASSET_ID).type, self.name)

    def time_zone(self) -> str | None:
        """The time zone the timestamp column is stored in (None: naive, or a date)."""
        kind = self.schema.field(TIMESTAMP).type
        return kind.tz if pa.types.is_timestamp(kind) else None

    @property
    def num_rows(self) -> int:
        if self._file is not None:
            return int(self._file.metadata.num_rows)
        return int(self._frame().num_rows)

    def _frame(self) -> pa.Table:
        if self._table is None:  # only a file's table is dropped by `release`
            msg = f"{self.name}: no in-memory table"
            raise DataError(msg)
        return self._table

    def preload(self, columns: Sequence[str]) -> None:
        """Decode the columns once, multi-threaded, and keep them until `release`."""
        if self._file is None:
            self._preloaded = list(self.batches(columns))
            return
        try:
            reader = pq.ParquetFile(
                self.name,
                metadata=self._file.metadata,
                read_dictionary=[ASSET_ID]
                if ASSET_ID in columns and self._text_ids(self.schema)
                else None,
                # streamed column reads: pre-buffering whole row groups costs ~0.4 GB at W4 scale
                pre_buffer=False,
                buffer_size=1 << 20,
            )
            table = reader.read(columns=list(columns), use_threads=True)
        except (OSError, pa.ArrowException) as exc:
            msg = f"{self.name}: cannot read columns {list(columns)} ({exc})"
            raise DataError(msg) from exc
        self._preloaded = table.to_batches()

    def release(self) -> None:
        self._preloaded = None
        self._table = None if self._file is not None else self._table
        pa.default_memory_pool().release_unused()  # hand decoded buffers back to the OS now

    def require(self, columns: Sequence[str]) -> None:
        missing = [c for c in columns if c not in self.columns]
        if missing:
            msg = f"{self.name}: missing column(s) {missing} (has {list(self.columns)})"
            raise DataError(msg)

    def numeric_columns(self, exclude: Sequence[str]) -> list[str]:
        return [f.name for f in self.schema if f.name not in exclude and is_number(f.type)]

    def batches(self, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """The columns in record batches, in file order. Batch boundaries depend on the
        columns read (a dictionary column ends a batch at each row group): callers that
        line batches up with earlier reads go by row offset, never by batch number."""
        if self._preloaded is not None:
            for batch in self._preloaded:
                yield batch.select(list(columns))
            return
        try:
            if self._file is not None:
                yield from self._file.iter_batches(batch_size=BATCH_ROWS, columns=list(columns))
            else:
                yield from self._frame().select(list(columns)).to_batches(max_chunksize=BATCH_ROWS)
        except (OSError, pa.ArrowException) as exc:
            msg = f"{self.name}: cannot read columns {list(columns)} ({exc})"
            raise DataError(msg) from exc
