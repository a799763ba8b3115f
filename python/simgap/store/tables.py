"""Per-sample metadata tables of a store: checked columns, written to
``metadata.parquet`` (or ``metadata.csv`` without pyarrow) and read back with
their dtypes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._util.arrays import is_tensor
from .._util.files import atomic_write
from .format import CSV_FILE, PARQUET_FILE, StoreError

__all__ = ["metadata_columns", "metadata_length", "read_metadata", "write_metadata"]


def _pyarrow():
    """The pyarrow module with its parquet submodule, or None (metadata then goes to CSV)."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return None
    return pyarrow


def metadata_columns(metadata: Any, name: str = "metadata") -> dict[str, np.ndarray] | None:
    """Validate per-sample metadata into {column: 1-D array}, all the same length."""
    if metadata is None:
        return None
    if hasattr(metadata, "columns") and hasattr(metadata, "to_numpy") and hasattr(metadata, "__getitem__"):
        # a pandas DataFrame
        metadata = {str(c): metadata[c].to_numpy() for c in metadata.columns}
    elif hasattr(metadata, "column_names") and hasattr(metadata, "column"):
        # a pyarrow Table
        metadata = {c: metadata.column(c).to_numpy() for c in metadata.column_names}
    if not isinstance(metadata, Mapping):
        raise TypeError(
            f"{name} must be a mapping of column name -> sequence (or a pandas DataFrame); "
            f"got {type(metadata).__name__}"
        )
    cols: dict[str, np.ndarray] = {}
    length = None
    for key, values in metadata.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name} column names must be non-empty strings; got {key!r}")
        if is_tensor(values):
            values = values.detach().cpu().numpy()
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"{name}[{key!r}] must be 1-D (one value per sample); got shape {arr.shape}")
        if arr.dtype.kind not in "biufUSO":
            raise TypeError(f"{name}[{key!r}] has unsupported dtype {arr.dtype}")
        if arr.dtype.kind == "O" and not all(isinstance(v, str) for v in arr.tolist()):
            raise TypeError(f"{name}[{key!r}] must hold numbers, booleans or strings")
        if arr.dtype.kind in "SO":
            arr = arr.astype(str)
        if length is None:
            length = arr.shape[0]
        elif arr.shape[0] != length:
            first = next(iter(cols))
            raise ValueError(
                f"{name}[{key!r}] has {arr.shape[0]} values but {name}[{first!r}] has {length}"
            )
        cols[key] = arr
    if not cols:
        return None
    return cols


def metadata_length(cols: dict[str, np.ndarray] | None) -> int | None:
    """The number of rows of checked metadata, or None for no metadata."""
    return None if not cols else next(iter(cols.values())).shape[0]


def _write_csv(tmp: str, cols: dict[str, np.ndarray]) -> None:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        names = list(cols)
        writer.writerow(names)
        lists = [cols[k].tolist() for k in names]
        for row in zip(*lists):
            writer.writerow([repr(v) if isinstance(v, float) else v for v in row])


def write_metadata(folder: Path, cols: dict[str, np.ndarray]) -> tuple[str, str, dict[str, str]]:
    """Write the table durably; returns (file name, format, {column: numpy dtype str})."""
    dtypes = {k: v.dtype.str if v.dtype.kind != "U" else "str" for k, v in cols.items()}
    pa = _pyarrow()
    if pa is not None:
        import pyarrow.parquet as pq

        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        target, fmt = folder / PARQUET_FILE, "parquet"
        atomic_write(target, lambda tmp: pq.write_table(table, tmp))
    else:
        target, fmt = folder / CSV_FILE, "csv"
        atomic_write(target, lambda tmp: _write_csv(tmp, cols))
    return target.name, fmt, dtypes


def read_metadata(path: Path, fmt: str, dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Read a metadata table written by :func:`write_metadata`, with its recorded dtypes."""
    if fmt == "parquet":
        pa = _pyarrow()
        if pa is None:
            raise ImportError(
                f"reading {path} needs pyarrow: pip install 'simgap[store]' (or pyarrow>=12)"
            )
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise StoreError(f"{path} could not be read as parquet ({exc})") from None
        out = {}
        for c in table.column_names:
            col = np.asarray(table.column(c).to_numpy(zero_copy_only=False))
            out[c] = col.astype(str) if dtypes.get(c) == "str" else col
        return out
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StoreError(f"{path} could not be read as CSV ({exc})") from None
    if not rows:
        raise StoreError(f"{path} is empty; expected a header row")
    names, body = rows[0], rows[1:]
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        raw = [r[j] if j < len(r) else "" for r in body]
        kind = dtypes.get(name, "str")
        try:
            if kind == "str":
                out[name] = np.asarray(raw, dtype=str)
            elif np.dtype(kind).kind == "b":
                out[name] = np.asarray([v == "True" for v in raw], dtype=bool)
            elif np.dtype(kind).kind in "iu":  # exactly: through float, 2**60 + 1 lost its last bit
                out[name] = np.asarray([int(v) for v in raw], dtype=np.dtype(kind))
            else:
                out[name] = np.asarray([float(v) for v in raw]).astype(np.dtype(kind))
        except ValueError as exc:
            raise StoreError(f"{path} column {name!r} could not be parsed as {kind} ({exc})") from None
    return out
