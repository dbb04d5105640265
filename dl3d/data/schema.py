"""Table schemas, declared once as pyarrow types, and checked codecs between Arrow and numpy.

A schema lists columns with their Arrow type and, for tensor columns, the per-row shape. Reading
accepts any Arrow layout that holds the same numbers (``list``, ``large_list`` or
``fixed_size_list`` of any integer/float type, float64 where float32 is declared) so Parquet files
written by other tools are usable; a mismatch raises :class:`DataError` naming the file, the column,
the expected and the found type or shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dl3d.data.errors import DataError


def tensor_type(shape: tuple[int, ...], value_type: pa.DataType = pa.float32()) -> pa.DataType:
    """Arrow type for one row of a fixed-shape tensor: nested fixed-size lists, outermost first."""
    t = value_type
    for n in reversed(shape):
        t = pa.list_(t, n)
    return t


@dataclass(frozen=True)
class Column:
    """One column of a table schema."""

    name: str
    """Column name."""
    type: pa.DataType
    """Arrow type written by dl3d."""
    shape: tuple[int | None, ...] | None = None
    """Per-row tensor shape for list columns (``None`` entries are free); ``None`` for scalars."""
    required: bool = True
    """Whether a table must have this column."""
    doc: str = ""
    """What the column holds: units, frame, layout."""

    @property
    def is_tensor(self) -> bool:
        return self.shape is not None


@dataclass(frozen=True)
class TableSchema:
    """The columns of one dataset kind, with a version for ``_dataset.json``."""

    kind: str
    version: int
    columns: tuple[Column, ...]
    doc: str = ""
    by_name: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.kind!r} declares a column twice: {names}")
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    def arrow_schema(self, present: list[str] | None = None) -> pa.Schema:
        """The Arrow schema dl3d writes, optionally restricted to the ``present`` columns (in schema order)."""
        cols = [c for c in self.columns if present is None or c.name in present]
        return pa.schema([pa.field(c.name, c.type) for c in cols])

    def validate(self, table: pa.Table, source: str) -> None:
        """Check that required columns exist and that every known column has a compatible type."""
        for col in self.columns:
            if col.name not in table.column_names:
                if col.required:
                    raise DataError(
                        source,
                        f"missing column {col.name!r} ({_describe(col)}); found columns {table.column_names}",
                    )
                continue
            found = table.schema.field(col.name).type
            if not _compatible(col, found):
                raise DataError(source, f"column {col.name!r}: expected {_describe(col)}, found type {found}")


def _describe(col: Column) -> str:
    if col.is_tensor:
        dims = ", ".join("*" if n is None else str(n) for n in col.shape)
        return f"numeric list of shape ({dims}) per row"
    return str(col.type)


def _compatible(col: Column, found: pa.DataType) -> bool:
    if pa.types.is_null(found):  # an all-null column (e.g. an empty table from elsewhere); nulls are checked on decode
        return True
    if col.is_tensor:
        depth = 0
        t = found
        while _is_list(t):
            t = t.value_type
            depth += 1
        return depth == len(col.shape) and (pa.types.is_floating(t) or pa.types.is_integer(t))
    want = col.type
    if pa.types.is_string(want) or pa.types.is_large_string(want):
        return pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_integer(found)
    if pa.types.is_integer(want):
        return pa.types.is_integer(found)
    if pa.types.is_floating(want):
        return pa.types.is_floating(found) or pa.types.is_integer(found)
    if pa.types.is_binary(want) or pa.types.is_large_binary(want):
        return pa.types.is_binary(found) or pa.types.is_large_binary(found)
    return found == want


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def tensor_to_arrow(x: np.ndarray, value_type: pa.DataType = pa.float32()) -> pa.Array:
    """Encode ``x: (N, *shape)`` as an Arrow array of N fixed-shape nested lists."""
    x = np.ascontiguousarray(x, dtype=value_type.to_pandas_dtype())
    arr: pa.Array = pa.array(x.reshape(-1), type=value_type)
    for n in reversed(x.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, n)
    return arr


def list_to_arrow(x: np.ndarray, value_type: pa.DataType = pa.float32()) -> pa.ListArray:
    """Encode ``x: (N, K, *inner)`` as N variable-length lists of K fixed-shape items.

    For columns declared with a free leading dimension (``shape=(None, ...)``, e.g. betas or joints),
    whose length depends on the model rather than on the schema.
    """
    n, k = x.shape[:2]
    inner = tensor_to_arrow(np.asarray(x).reshape(n * k, *x.shape[2:]), value_type)
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * k), inner)


def to_table(schema: TableSchema, columns: Mapping[str, Any]) -> pa.Table:
    """Build a table of ``schema`` from plain column values, each encoded as its declared column says.

    Every table dl3d writes is built here, so a column's Arrow type comes from its one declaration.

    Args:
        schema: the dataset kind.
        columns: column name -> values, one per row. Scalar columns take a sequence or array (``None``
            for a null where the column allows it). Tensor columns take an ndarray (or a sequence of
            per-row arrays) of shape ``(N, *shape)``; a free leading dimension (``shape=(None, ...)``)
            also takes a list of per-row arrays of different lengths. Arrow arrays are cast to the
            declared type. Optional columns may be left out; the table keeps the schema's column order.

    Raises:
        ValueError: a column the schema does not declare, a required column missing, columns of
            different lengths, or a tensor whose per-row shape is not the declared one; the message
            names the schema kind and the column.
    """
    unknown = [name for name in columns if name not in schema.by_name]
    if unknown:
        raise ValueError(f"{schema.kind}: unknown column {unknown[0]!r}; declared columns: "
                         f"{[c.name for c in schema.columns]}")
    missing = [c.name for c in schema.columns if c.required and c.name not in columns]
    if missing:
        raise ValueError(f"{schema.kind}: missing required column {missing[0]!r}")
    arrays = {c.name: _encode(schema.kind, c, columns[c.name]) for c in schema.columns if c.name in columns}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{schema.kind}: columns have different lengths: {lengths}")
    return pa.table(arrays, schema=schema.arrow_schema(list(arrays)))


def _encode(kind: str, col: Column, values: Any) -> pa.Array:
    """One column's values as an Arrow array of the column's declared type."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.cast(col.type)
    if not col.is_tensor:
        return pa.array(values, type=col.type)
    value_type = col.type
    while _is_list(value_type):
        value_type = value_type.value_type
    arr = _encode_rows(kind, col, values, col.shape, value_type)
    return arr if arr.type == col.type else arr.cast(col.type)


def _encode_rows(kind: str, col: Column, values: Any, shape: tuple[int | None, ...],
                 value_type: pa.DataType) -> pa.Array:
    """``values``, N items of per-item ``shape`` (``None`` = free), as nested Arrow lists.

    An ndarray (or items of one shape) is encoded in bulk; items whose free leading dimension differs
    are concatenated, and a ragged dimension below that is flattened one level at a time.
    """
    if shape and shape[0] is None and not isinstance(values, np.ndarray):
        rows = [v if isinstance(v, np.ndarray) else np.asarray(v) if _is_rectangular(v) else list(v) for v in values]
        shapes = {r.shape if isinstance(r, np.ndarray) else None for r in rows}
        if len(shapes) > 1 or None in shapes:  # rows of different lengths
            fixed_inner = all(n is not None for n in shape[1:])
            if fixed_inner:
                for i, r in enumerate(rows):
                    if len(r):
                        _check_shape(kind, col, np.shape(r), f"row {i}", shape)
                inner = _encode_rows(kind, col, np.concatenate([np.asarray(r).reshape(-1, *shape[1:]) for r in rows]),
                                     shape[1:], value_type)
            else:
                inner = _encode_rows(kind, col, [item for r in rows for item in r], shape[1:], value_type)
            offsets = np.cumsum([0] + [len(r) for r in rows], dtype=np.int32)
            return pa.ListArray.from_arrays(pa.array(offsets), inner)
        values = np.stack(rows) if rows else np.zeros((0, *(n or 0 for n in shape)))
    x = np.asarray(values)
    empty = (x.shape[0] if x.ndim else 0, *(n or 0 for n in shape))
    if x.size == 0 and x.ndim != len(shape) + 1 and 0 in empty:  # no numbers at all: N rows of empty items
        x = x.reshape(empty)
    _check_shape(kind, col, x.shape[1:], "rows", shape)
    return _encode_uniform(x, shape, value_type)


def _encode_uniform(x: np.ndarray, shape: tuple[int | None, ...], value_type: pa.DataType) -> pa.Array:
    """``x: (N, *dims)`` with every item of the same dims, as lists (free dims) of fixed-size lists."""
    if not shape or shape[0] is not None:
        return tensor_to_arrow(x, value_type)
    n, k = x.shape[:2]
    inner = _encode_uniform(x.reshape(n * k, *x.shape[2:]), shape[1:], value_type)
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * k), inner)


def _is_rectangular(value: Any) -> bool:
    try:
        return np.asarray(value).dtype != object
    except ValueError:  # a ragged nested sequence
        return False


def _check_shape(kind: str, col: Column, found: tuple[int, ...], where: str,
                 shape: tuple[int | None, ...] | None = None) -> None:
    shape = col.shape if shape is None else shape
    ok = len(found) == len(shape) and all(w is None or w == n for w, n in zip(shape, found))
    if not ok:
        dims = ", ".join("*" if n is None else str(n) for n in col.shape)
        raise ValueError(f"{kind}: column {col.name!r}: expected ({dims}) per row, found {tuple(found)} in {where}")


def arrow_to_tensor(
    column: pa.ChunkedArray | pa.Array,
    shape: tuple[int | None, ...],
    *,
    name: str,
    source: str,
    dtype: type = np.float32,
) -> np.ndarray:
    """Decode a list column into ``(N, *shape)``; free dimensions (``None``) must agree across rows.

    Raises DataError naming the column, the offending row and the expected/found length, for null
    rows and for rows of the wrong length.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n_rows = len(column)
    if pa.types.is_null(column.type):
        if n_rows:
            raise DataError(source, f"column {name!r}: null value at row 0")
        return np.zeros((0, *(n or 0 for n in shape)), dtype)
    dims: list[int] = []
    arr: pa.Array = column
    for level, want in enumerate(shape):
        if not _is_list(arr.type):
            raise DataError(source, f"column {name!r}: expected {len(shape)} nested list levels, found type {column.type}")
        if arr.null_count:
            bad = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(source, f"column {name!r}: null value at {'row' if level == 0 else 'element'} {bad}")
        if pa.types.is_fixed_size_list(arr.type):
            n = arr.type.list_size
            if want is not None and n != want:
                raise DataError(source, f"column {name!r}: expected length {want} at level {level}, found {n}")
            values = arr.flatten()
        else:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            n = want if want is not None else (int(lengths[0]) if len(lengths) else 0)
            wrong = np.flatnonzero(lengths != n)
            if len(wrong):
                i = int(wrong[0])
                where = f"row {i}" if level == 0 else f"element {i}"
                raise DataError(
                    source,
                    f"column {name!r}: expected length {n} at level {level}, found {int(lengths[i])} ({where})",
                )
            values = arr.flatten()
        dims.append(n)
        arr = values
    if arr.null_count:
        raise DataError(source, f"column {name!r}: contains null numbers")
    if not (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        raise DataError(source, f"column {name!r}: expected numbers, found {arr.type}")
    flat = arr.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return flat.reshape(n_rows, *dims)
