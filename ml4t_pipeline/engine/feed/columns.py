"""One Arrow column of a record batch -> one numpy array, without pandas.

pyarrow's own conversions (`Array.to_numpy`, `np.asarray(array)`, `pa.array(ndarray)`,
`pa.scalar`) import pandas whenever it is installed, which costs every run about a fifth of a
second. The feed therefore reads fixed-width columns through their data buffer (`np.frombuffer`,
no copy), marks nulls from the validity bitmap itself, reads string dictionaries with
`to_pylist`, and hands numpy arrays back to Arrow compute as buffers (`as_arrow`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml4t_pipeline.errors import DataError
from ml4t_pipeline.keys import ASSET_ID, TIMESTAMP


def _data(array: pa.Array, dtype: np.dtype[np.generic]) -> np.ndarray:
    """The values of a fixed-width array as a read-only view of its data buffer (nulls hold
    whatever the buffer holds)."""
    n = len(array)
    buffer = array.buffers()[1]
    if buffer is None or n == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(buffer, dtype=dtype, count=n, offset=array.offset * dtype.itemsize)


def _is_null(array: pa.Array) -> np.ndarray:
    """Where the array is null, from its validity bitmap (LSB first)."""
    bitmap = array.buffers()[0]
    n = len(array)
    if bitmap is None:
        return np.zeros(n, dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + n] == 0


def as_arrow(values: np.ndarray) -> pa.Array:
    """A 1-d numeric ndarray as an Arrow array over the same memory (no copy)."""
    values = np.ascontiguousarray(values)
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, values.shape[0], [None, pa.py_buffer(values)])


def int64_values(array: pa.Array, *, null: int | None = None) -> np.ndarray:
    """An integer Arrow array as int64 (a read-only view when it is int64 without nulls);
    nulls become `null`, which must then be given."""
    values = _data(array.cast(pa.int64()), np.dtype(np.int64))
    if array.null_count:
        if null is None:
            msg = "int64_values: the array has nulls and no value for them"
            raise ValueError(msg)
        values = np.where(_is_null(array), null, values)
    return values


def is_text(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def is_number(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def timestamps_us(array: pa.Array, name: str, column: str = TIMESTAMP) -> np.ndarray:
    """A datetime or date column -> int64 microseconds UTC (naive values are read as UTC).

    Nanosecond values that are whole microseconds convert exactly; any other is a DataError
    (the engine keeps microseconds and never truncates a timestamp silently)."""
    kind = array.type
    if pa.types.is_timestamp(kind):
        if kind.unit == "ns":
            _refuse_sub_microseconds(array, name, column)
        if kind.unit != "us":
            array = pc.cast(array, pa.timestamp("us", tz=kind.tz))
        array = array.cast(pa.timestamp("us"))
    elif pa.types.is_date(kind):
        array = pc.cast(array, pa.timestamp("us"))
    else:
        msg = f"{name}: column '{column}' must be a datetime or date, found {kind}"
        raise DataError(msg)
    if array.null_count:
        msg = f"{name}: column '{column}' has {array.null_count} null value(s)"
        raise DataError(msg)
    return int64_values(array)


def _refuse_sub_microseconds(array: pa.Array, name: str, column: str) -> None:
    nanos = int64_values(array.cast(pa.int64()), null=0)
    bad = np.flatnonzero(nanos % 1000)
    if bad.shape[0]:
        example = np.datetime64(int(nanos[bad[0]]), "ns")
        msg = (
            f"{name}: column '{column}' has {bad.shape[0]} value(s) finer than a microsecond, "
            f"e.g. {example}; the engine keeps microseconds: round the column to microseconds"
        )
        raise DataError(msg)


def float_values(array: pa.Array, name: str, column: str) -> np.ndarray:
    """A numeric column -> float64, NaN where null (read-only when there is no null)."""
    if not is_number(array.type):
        msg = f"{name}: column '{column}' must be numeric, found {array.type}"
        raise DataError(msg)
    floats = pc.cast(array, pa.float64())
    values = _data(floats, np.dtype(np.float64))
    if floats.null_count:
        values = np.where(_is_null(floats), np.nan, values)
    return values


def id_kind(kind: pa.DataType, name: str) -> str:
    """What an asset_id column of Arrow type `kind` holds: "text" or "integer" ids (also as a
    dictionary); any other type (binary, float, ...) is a DataError."""
    values = kind.value_type if pa.types.is_dictionary(kind) else kind
    if is_text(values):
        return "text"
    if pa.types.is_integer(values):
        return "integer"
    msg = f"{name}: column '{ASSET_ID}' must hold text or integer ids, found {kind}"
    raise DataError(msg)


def same_id_kind(kind: str, name: str, reference_kind: str, reference: str) -> None:
    """Refuse asset ids of `name` whose kind differs from those of `reference`: a text id
    never equals an integer one, so no row of the one would ever meet a row of the other."""
    if kind != reference_kind:
        msg = (
            f"{name}: column '{ASSET_ID}' holds {kind} ids but {reference} holds "
            f"{reference_kind} ids, so no id can match; write both with the same type"
        )
        raise DataError(msg)


def asset_values(array: pa.Array, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A non-null asset_id column -> (values, None) for integer ids, or (dictionary, indices)
    for text ids: the few distinct strings of the batch (object array) and each row's index
    into them, so millions of rows never become Python strings."""
    kind = array.type
    id_kind(kind, name)
    if is_text(kind):
        array = pc.dictionary_encode(array.cast(pa.large_string()))
    if pa.types.is_dictionary(array.type):
        dictionary = np.array(array.dictionary.to_pylist(), dtype=object)
        indices = _data(array.indices, np.dtype(array.indices.type.to_pandas_dtype()))
        return dictionary, indices.astype(np.int64)
    return _data(array, np.dtype(kind.to_pandas_dtype())), None
