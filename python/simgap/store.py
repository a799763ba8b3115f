"""On-disk embedding stores: float32 rows in a memory-mapped ``.npy``, a JSON
manifest and optional per-sample metadata, written in chunks and resumable.

Layout of a store folder::

    embeddings.npy      float32, shape (count, dim), C order (read with mmap)
    manifest.json       model class, layer, pooling, dim, count, dtype, creation
                        time, sha256 of the rows; written last: a store is
                        complete exactly when its manifest exists
    metadata.parquet    optional per-sample columns (metadata.csv without pyarrow)

While a store is being written the rows go to ``embeddings.npy.partial`` and
``progress.json`` records, durably (data fsync'd first, then the progress file
written to a temporary name, fsync'd and renamed), how many rows are valid.
An interrupted run (exception, Ctrl-C, killed process, power loss) therefore
leaves no manifest, so it can never be mistaken for a complete store, and
``resume=True`` continues from the last recorded row.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._util.arrays import is_tensor as _is_torch_tensor

__all__ = ["EmbeddingStore", "StoreError", "as_embeddings", "load_embeddings", "save_embeddings"]

FORMAT = "simgap.embeddings"
FORMAT_VERSION = 1

EMBEDDINGS_FILE = "embeddings.npy"
PARTIAL_FILE = "embeddings.npy.partial"
MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
PARQUET_FILE = "metadata.parquet"
CSV_FILE = "metadata.csv"
_OWN_FILES = {EMBEDDINGS_FILE, PARTIAL_FILE, MANIFEST_FILE, PROGRESS_FILE, PARQUET_FILE, CSV_FILE}

# Every .npy this module writes has a header of exactly this many bytes, so the
# final shape can be written in place over the provisional one.
_NPY_HEADER_BYTES = 128
_HASH_BLOCK_BYTES = 8 << 20  # rows are re-read for checksums in blocks of this size
_RESUME_HINT = "resume it with Embedder.to_store(..., resume=True)"


class StoreError(ValueError):
    """An embedding store is incomplete, damaged, or incompatible with the request.

    The message names the store's path and says what is wrong (missing or
    corrupt manifest, truncated data, count or checksum mismatch, ...).
    """


# ----------------------------------------------------------------------------
# Small durable-file helpers
# ----------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to ``path.tmp``, fsync, rename over ``path``: readers see old or new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: Mapping[str, Any]) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _npy_header(count: int, dim: int) -> bytes:
    """A version 1.0 .npy header for float32 (count, dim), padded to _NPY_HEADER_BYTES."""
    body = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (count, dim)
    room = _NPY_HEADER_BYTES - 10
    body = body.ljust(room - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + body.encode("latin1")


def _read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data offset) of a .npy file; StoreError if unreadable."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except (ValueError, OSError, SyntaxError, struct.error) as exc:
        raise StoreError(f"{path} has a damaged .npy header ({exc})") from None
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), int(offset)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _simgap_version() -> str:
    try:
        from importlib.metadata import version

        return version("simgap")
    except Exception:  # pragma: no cover - source tree
        return "0+unknown"


# ----------------------------------------------------------------------------
# Metadata tables
# ----------------------------------------------------------------------------


def _pyarrow():
    """The pyarrow module with its parquet submodule, or None (metadata then goes to CSV)."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return None
    return pyarrow


def _metadata_columns(metadata: Any, name: str = "metadata") -> dict[str, np.ndarray] | None:
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
        if _is_torch_tensor(values):
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


def _metadata_length(cols: dict[str, np.ndarray] | None) -> int | None:
    return None if not cols else next(iter(cols.values())).shape[0]


def _write_metadata(folder: Path, cols: dict[str, np.ndarray]) -> tuple[str, str, dict[str, str]]:
    """Write the table durably; returns (file name, format, {column: numpy dtype str})."""
    dtypes = {k: v.dtype.str if v.dtype.kind != "U" else "str" for k, v in cols.items()}
    pa = _pyarrow()
    if pa is not None:
        import pyarrow.parquet as pq

        target = folder / PARQUET_FILE
        tmp = folder / (PARQUET_FILE + ".tmp")
        pq.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}), tmp)
        fmt = "parquet"
    else:
        target = folder / CSV_FILE
        tmp = folder / (CSV_FILE + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            names = list(cols)
            writer.writerow(names)
            lists = [cols[k].tolist() for k in names]
            for row in zip(*lists):
                writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
        fmt = "csv"
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target.name, fmt, dtypes


def _read_metadata(path: Path, fmt: str, dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
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


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------


class EmbeddingStore:
    """An opened, complete embedding store (read-only).

    Opening checks the manifest (present, valid JSON, required fields), the
    data file (present, a float32 .npy of shape (count, dim) whose size
    matches its header) and the metadata table (present, ``count`` rows);
    anything wrong raises :class:`StoreError` saying what.  The content
    checksum is checked only with ``verify=True`` (it reads every row) or by
    :meth:`verify`.

    Parameters
    ----------
    path : str or os.PathLike
        The store folder.
    verify : bool, default False
        Also recompute the sha256 of the rows and compare it with the manifest.

    Attributes
    ----------
    path : pathlib.Path
    manifest : dict
        The parsed ``manifest.json`` (a copy is returned by :meth:`to_dict`).
    embeddings : numpy.memmap, shape (count, dim), float32, read-only
    count, dim : int

    Examples
    --------
    >>> import numpy as np, simgap, tempfile, os
    >>> folder = os.path.join(tempfile.mkdtemp(), "emb")
    >>> store = simgap.save_embeddings(folder, np.ones((4, 3), dtype=np.float32))
    >>> simgap.EmbeddingStore(folder, verify=True).embeddings.shape
    (4, 3)
    """

    _REQUIRED = {
        "format": str,
        "format_version": int,
        "count": int,
        "dim": int,
        "dtype": str,
        "checksum": str,
        "created": str,
    }

    def __init__(self, path: Any, *, verify: bool = False) -> None:
        if isinstance(path, EmbeddingStore):
            path = path.path
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no embedding store at {self.path}: the folder does not exist")
        if not self.path.is_dir():
            raise StoreError(f"{self.path} is a file; an embedding store is a folder")
        self.manifest = self._read_manifest()
        self.count = self.manifest["count"]
        self.dim = self.manifest["dim"]
        self.embeddings = self._open_embeddings()
        self._metadata: dict[str, np.ndarray] | None = None
        self._check_metadata_file()
        if verify:
            self.verify()

    # -- checks ---------------------------------------------------------------

    def _read_manifest(self) -> dict[str, Any]:
        mpath = self.path / MANIFEST_FILE
        if not mpath.exists():
            progress = _read_progress(self.path)
            if progress is not None:
                raise StoreError(
                    f"the embedding store at {self.path} is incomplete: writing was interrupted "
                    f"after {progress.get('rows', 0)} rows and it has no {MANIFEST_FILE}; "
                    f"{_RESUME_HINT}"
                )
            if (self.path / PARTIAL_FILE).exists():
                raise StoreError(
                    f"the embedding store at {self.path} is incomplete: writing was interrupted "
                    f"before any rows were recorded; {_RESUME_HINT}"
                )
            raise StoreError(f"{self.path} is not an embedding store: {MANIFEST_FILE} is missing")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{mpath} is corrupt: not valid JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise StoreError(f"{mpath} is corrupt: expected a JSON object, got {type(manifest).__name__}")
        for key, typ in self._REQUIRED.items():
            if key not in manifest:
                raise StoreError(f"{mpath} is corrupt: field {key!r} is missing")
            value = manifest[key]
            if not isinstance(value, typ) or isinstance(value, bool):
                raise StoreError(
                    f"{mpath} is corrupt: field {key!r} should be {typ.__name__}, got {value!r}"
                )
        if manifest["format"] != FORMAT:
            raise StoreError(f"{mpath} is not a simgap embedding manifest (format {manifest['format']!r})")
        if manifest["format_version"] > FORMAT_VERSION:
            raise StoreError(
                f"{mpath} has format version {manifest['format_version']}; this simgap reads up to "
                f"{FORMAT_VERSION}: upgrade simgap"
            )
        if manifest["dtype"] != "float32":
            raise StoreError(f"{mpath} is corrupt: dtype {manifest['dtype']!r}, expected 'float32'")
        if manifest["count"] < 0 or manifest["dim"] < 1:
            raise StoreError(
                f"{mpath} is corrupt: count={manifest['count']}, dim={manifest['dim']}"
            )
        return manifest

    def _open_embeddings(self) -> np.ndarray:
        epath = self.path / manifest_file(self.manifest)
        if not epath.exists():
            raise StoreError(f"the embedding store at {self.path} is damaged: {epath.name} is missing")
        shape, dtype, fortran, offset = _read_npy_header(epath)
        if dtype != np.dtype("<f4") or fortran or len(shape) != 2:
            raise StoreError(
                f"{epath} holds {'Fortran-order ' if fortran else ''}{dtype} of shape {shape}; "
                "expected a C-order float32 2-D array"
            )
        n, d = shape
        expected = offset + n * d * 4
        actual = epath.stat().st_size
        if actual != expected:
            state = "truncated" if actual < expected else "longer than its header says"
            raise StoreError(
                f"{epath} is {state}: its header declares shape ({n}, {d}), i.e. {expected} bytes, "
                f"but the file has {actual} bytes"
            )
        if n != self.count:
            raise StoreError(
                f"count mismatch in {self.path}: {MANIFEST_FILE} says count={self.count} but "
                f"{epath.name} holds {n} rows"
            )
        if d != self.dim:
            raise StoreError(
                f"dimension mismatch in {self.path}: {MANIFEST_FILE} says dim={self.dim} but "
                f"{epath.name} has {d} columns"
            )
        if n == 0:
            return np.empty((0, d), dtype=np.float32)
        return np.memmap(epath, dtype=np.float32, mode="r", offset=offset, shape=(n, d))

    def _check_metadata_file(self) -> None:
        name = self.manifest.get("metadata_file")
        if name is None:
            return
        if not isinstance(name, str) or name not in (PARQUET_FILE, CSV_FILE):
            raise StoreError(f"{self.path / MANIFEST_FILE} is corrupt: metadata_file={name!r}")
        if not (self.path / name).exists():
            raise StoreError(
                f"the embedding store at {self.path} is damaged: {name} is missing "
                f"({MANIFEST_FILE} lists it)"
            )

    def verify(self) -> None:
        """Recompute the sha256 of the rows; raise StoreError if it differs from the manifest."""
        epath = self.path / manifest_file(self.manifest)
        _, _, _, offset = _read_npy_header(epath)
        digest = "sha256:" + _hash_file_rows(epath, offset, self.count * self.dim * 4).hexdigest()
        if digest != self.manifest["checksum"]:
            raise StoreError(
                f"checksum mismatch in {self.path}: the rows hash to {digest} but "
                f"{MANIFEST_FILE} records {self.manifest['checksum']}; the data was modified or damaged"
            )

    # -- access -----------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, np.ndarray] | None:
        """Per-sample metadata as {column: 1-D array of length count}, or None."""
        if self._metadata is None and self.manifest.get("metadata_file"):
            name = self.manifest["metadata_file"]
            fmt = self.manifest.get("metadata_format", "parquet" if name == PARQUET_FILE else "csv")
            cols = _read_metadata(self.path / name, fmt, self.manifest.get("metadata_columns", {}))
            for key, col in cols.items():
                if col.shape[0] != self.count:
                    raise StoreError(
                        f"metadata mismatch in {self.path}: column {key!r} of {name} has "
                        f"{col.shape[0]} rows but the store holds {self.count} embeddings"
                    )
            self._metadata = cols
        return None if self._metadata is None else dict(self._metadata)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.count, self.dim)

    def __len__(self) -> int:
        return self.count

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(self.embeddings)
        return arr if dtype is None else arr.astype(dtype)

    def to_dict(self) -> dict[str, Any]:
        """A copy of the manifest (plain JSON data)."""
        return json.loads(json.dumps(self.manifest))

    def __repr__(self) -> str:
        return (
            f"EmbeddingStore({str(self.path)!r}, count={self.count}, dim={self.dim}, "
            f"model={self.manifest.get('model_class')!r}, layer={self.manifest.get('layer')!r})"
        )


def manifest_file(manifest: Mapping[str, Any]) -> str:
    name = manifest.get("embeddings_file", EMBEDDINGS_FILE)
    if name != EMBEDDINGS_FILE:
        raise StoreError(f"manifest is corrupt: embeddings_file={name!r}, expected {EMBEDDINGS_FILE!r}")
    return name


def _read_progress(folder: Path) -> dict[str, Any] | None:
    ppath = folder / PROGRESS_FILE
    if not ppath.exists():
        return None
    try:
        progress = json.loads(ppath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{ppath} is corrupt ({exc}); remove the folder and start again") from None
    if not isinstance(progress, dict) or not isinstance(progress.get("rows"), int):
        raise StoreError(f"{ppath} is corrupt (no row count); remove the folder and start again")
    return progress


def _hash_file_rows(path: Path, offset: int, nbytes: int):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = nbytes
        while left > 0:
            block = f.read(min(left, _HASH_BLOCK_BYTES))
            if not block:
                raise StoreError(f"{path} is truncated: {left} bytes of rows are missing")
            h.update(block)
            left -= len(block)
    return h


def load_embeddings(path: Any, *, verify: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Open an embedding store: the rows memory-mapped, and the metadata.

    Parameters
    ----------
    path : str or os.PathLike
        A store folder written by :meth:`Embedder.to_store` or :func:`save_embeddings`.
    verify : bool, default False
        Also recompute the content checksum (reads every row once).

    Returns
    -------
    embeddings : numpy.memmap, shape (count, dim), float32, read-only
    metadata : dict of str to ndarray of shape (count,), or None
        The per-sample columns (ids, labels, simulation parameters) if any.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    StoreError
        The store is incomplete (an interrupted write: resume it) or damaged;
        the message says what is wrong.

    Examples
    --------
    >>> import numpy as np, simgap, tempfile, os
    >>> folder = os.path.join(tempfile.mkdtemp(), "emb")
    >>> _ = simgap.save_embeddings(folder, np.zeros((5, 2)), metadata={"id": [0, 1, 2, 3, 4]})
    >>> x, meta = simgap.load_embeddings(folder)
    >>> x.shape, x.dtype, meta["id"].tolist()
    ((5, 2), dtype('float32'), [0, 1, 2, 3, 4])
    """
    store = EmbeddingStore(path, verify=verify)
    return store.embeddings, store.metadata


def as_embeddings(obj: Any, *, name: str = "embeddings") -> Any:
    """Precomputed embeddings of any supported kind as one 2-D array.

    Analysis functions call this on their inputs so that arrays, tensors and
    stores are interchangeable.

    Parameters
    ----------
    obj : array_like, torch.Tensor, str, os.PathLike or EmbeddingStore
        A 2-D array of shape (n, d); a CPU tensor (returned as a NumPy view);
        a CUDA tensor (returned as it is, so GPU analysis stays on the GPU);
        the path of an embedding store or an opened :class:`EmbeddingStore`
        (its rows, memory-mapped, not read into memory).
    name : str, default "embeddings"
        The argument name used in error messages.

    Returns
    -------
    numpy.ndarray (or numpy.memmap, or CUDA torch.Tensor), shape (n, d)
        Real-valued; the dtype is kept (float32 for stores).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> simgap.as_embeddings([[1.0, 2.0], [3.0, 4.0]]).shape
    (2, 2)
    """
    if obj is None:
        raise TypeError(f"{name} must be an array of shape (n, d), a tensor or a store path; got None")
    if isinstance(obj, EmbeddingStore):
        return obj.embeddings
    if isinstance(obj, (str, os.PathLike)):
        return EmbeddingStore(obj).embeddings
    if _is_torch_tensor(obj):
        if obj.dim() != 2:
            raise ValueError(f"{name} must be 2-D (n, d); got a tensor of shape {tuple(obj.shape)}")
        if obj.is_complex():
            raise TypeError(f"{name} has dtype {obj.dtype}; expected real numbers")
        if obj.device.type != "cpu":
            return obj.detach()
        obj = obj.detach()
        if str(obj.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: widened, exactly
            obj = obj.float()
        obj = obj.resolve_conj().resolve_neg().numpy()
    try:
        arr = np.asarray(obj)
    except Exception as exc:
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d); got {arr.ndim}-D with shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------


class _StoreWriter:
    """Appends float32 rows to a store folder durably; see the module docstring.

    Use: ``skip = w.start()``; ``w.append(rows)`` per batch; ``w.finish()`` at
    the end, or ``w.abort()`` on any exception (records the rows written so far).
    After ``start()``, ``w.complete`` is True when ``resume=True`` found an
    already complete store: nothing is to be written then.
    """

    def __init__(
        self,
        path: Any,
        *,
        info: Mapping[str, Any],
        resume: bool,
        overwrite: bool,
        metadata: dict[str, np.ndarray] | None,
        expected_count: int | None,
        checkpoint_every: int,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be a bool, got {type(resume).__name__}")
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
        if resume and overwrite:
            raise ValueError("resume=True and overwrite=True contradict each other; pass one")
        n_meta = _metadata_length(metadata)
        if n_meta is not None and expected_count is not None and n_meta != expected_count:
            raise ValueError(f"metadata has {n_meta} rows but the data has {expected_count} samples")
        self.folder = Path(path)
        self.info = dict(info)
        self.resume = resume
        self.overwrite = overwrite
        self.metadata = metadata
        self.expected_count = expected_count
        self.checkpoint_every = checkpoint_every
        self.rows = 0
        self.dim: int | None = None
        self.complete = False
        # Overwriting a complete store: the old one stays readable (its manifest,
        # data and metadata untouched) until the new one is complete.
        self._replacing = False
        self._file = None
        self._hash = hashlib.sha256()
        self._since_checkpoint = 0

    # -- setup ------------------------------------------------------------------

    def start(self) -> int:
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"path {folder} is a file; an embedding store is a folder")
        interrupted = (folder / PROGRESS_FILE).exists() or (folder / PARTIAL_FILE).exists()
        if (folder / MANIFEST_FILE).exists():
            if self.resume and interrupted:  # an interrupted replacement of this store: continue it
                self._replacing = True
                return self._reopen()
            if self.resume:
                store = EmbeddingStore(folder)
                self._check_same_embedder(store.manifest, "the complete store")
                if self.expected_count is not None and store.count != self.expected_count:
                    raise StoreError(
                        f"the store at {folder} is complete with {store.count} rows but the data "
                        f"has {self.expected_count} samples; pass overwrite=True to rebuild it"
                    )
                self.complete = True
                return store.count
            if not self.overwrite:
                raise FileExistsError(
                    f"path {folder} already holds an embedding store; pass overwrite=True to "
                    "replace it or resume=True to reuse it"
                )
            self._replacing = True
            self._wipe()  # only the files of an earlier, interrupted replacement
            return 0
        elif interrupted:
            if self.resume:
                return self._reopen()
            if not self.overwrite:
                progress = _read_progress(folder) or {}
                raise FileExistsError(
                    f"path {folder} holds an interrupted embedding store ({progress.get('rows', 0)} "
                    "rows written); pass resume=True to continue it or overwrite=True to start again"
                )
            self._wipe()
        elif folder.exists():
            others = sorted(p.name for p in folder.iterdir() if not p.name.endswith(".tmp"))
            foreign = [n for n in others if n not in _OWN_FILES]
            if foreign:
                raise FileExistsError(
                    f"path {folder} is a folder with other files ({', '.join(foreign[:5])}); "
                    "an embedding store needs an empty or new folder"
                )
            self._wipe()
        folder.mkdir(parents=True, exist_ok=True)
        return 0

    def _wipe(self) -> None:
        """Remove the store's files; while replacing a complete store, only the
        new store's (progress and partial data), so the old one stays intact."""
        if self._replacing:
            names = [PROGRESS_FILE, PARTIAL_FILE]
        else:  # the manifest goes first, so that nothing looks complete while the rest is removed
            names = [MANIFEST_FILE, PROGRESS_FILE, *sorted(_OWN_FILES - {MANIFEST_FILE, PROGRESS_FILE})]
        for name in names:
            for p in (self.folder / name, self.folder / (name + ".tmp")):
                if p.exists():
                    p.unlink()
            if name == MANIFEST_FILE:
                _fsync_dir(self.folder)
        _fsync_dir(self.folder)

    def _check_same_embedder(self, recorded: Mapping[str, Any], what: str) -> None:
        for key in ("model_class", "layer", "pooling"):
            if key in recorded and recorded.get(key) != self.info.get(key):
                raise StoreError(
                    f"cannot resume {self.folder}: {what} was written with {key}="
                    f"{recorded.get(key)!r} but this call uses {key}={self.info.get(key)!r}; "
                    "pass overwrite=True to start again"
                )

    def _reopen(self) -> int:
        folder = self.folder
        final = folder / EMBEDDINGS_FILE
        partial = folder / PARTIAL_FILE
        if final.exists() and not partial.exists() and not self._replacing:
            # interrupted between the rename of the data file and the manifest write
            os.replace(final, partial)
        progress = _read_progress(folder)
        if progress is None or not partial.exists():
            # nothing durable was recorded: start from scratch
            self._wipe()
            return 0
        self._check_same_embedder(progress, "the interrupted store")
        rows, dim = progress["rows"], progress.get("dim")
        if not isinstance(dim, int) or dim < 1 or rows < 0:
            raise StoreError(f"{folder / PROGRESS_FILE} is corrupt (dim={dim!r}, rows={rows!r})")
        shape, dtype, _, offset = _read_npy_header(partial)
        if offset != _NPY_HEADER_BYTES or len(shape) != 2 or shape[1] != dim or dtype != np.dtype("<f4"):
            raise StoreError(f"{partial} does not match {PROGRESS_FILE}; pass overwrite=True to start again")
        need = offset + rows * dim * 4
        size = partial.stat().st_size
        if size < need:
            raise StoreError(
                f"{partial} has {size} bytes but {PROGRESS_FILE} records {rows} rows ({need} bytes): "
                "the data file was damaged; pass overwrite=True to start again"
            )
        if self.expected_count is not None and rows > self.expected_count:
            raise StoreError(
                f"the interrupted store at {folder} already has {rows} rows but the data has "
                f"{self.expected_count} samples; pass overwrite=True to start again"
            )
        self._hash = _hash_file_rows(partial, offset, rows * dim * 4)
        f = open(partial, "r+b")
        f.truncate(need)  # drop rows written after the last checkpoint
        f.seek(need)
        self._file = f
        self.rows, self.dim = rows, dim
        return rows

    # -- writing ----------------------------------------------------------------

    def append(self, rows: np.ndarray) -> None:
        if rows.shape[0] == 0:
            return
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below
            rows32 = np.ascontiguousarray(rows, dtype="<f4")
        if not np.isfinite(rows32).all():  # checked as stored, before anything of the batch is written
            bad = int(np.argwhere(~np.isfinite(rows32))[0][0])
            raise ValueError(
                f"embeddings contains NaN or Inf (as float32) at row {self.rows + bad}; nothing of its batch "
                "was written"
            )
        if self._file is None:
            self.dim = int(rows.shape[1])
            f = open(self.folder / PARTIAL_FILE, "w+b")
            f.write(_npy_header(0, self.dim))
            self._file = f
            self._checkpoint()
        elif rows.shape[1] != self.dim:
            raise ValueError(
                f"the model produced {rows.shape[1]} features for this batch but {self.dim} before; "
                "every batch must have the same embedding dimension"
            )
        rows = rows32
        self._file.write(memoryview(rows).cast("B"))
        self._hash.update(memoryview(rows).cast("B"))
        self.rows += rows.shape[0]
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.checkpoint_every:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Make the rows written so far durable, then record their number."""
        f = self._file
        f.flush()
        os.fsync(f.fileno())
        progress = dict(self.info)
        progress.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            status="writing",
            rows=self.rows,
            dim=self.dim,
            dtype="float32",
            expected_count=self.expected_count,
            updated=_now_iso(),
        )
        _atomic_write_json(self.folder / PROGRESS_FILE, progress)
        self._since_checkpoint = 0

    def abort(self) -> None:
        """After an exception: record what was written, close the file. Never raises."""
        if self._file is None:
            return
        try:
            self._checkpoint()
        except BaseException:  # pragma: no cover - disk trouble on top of the first error
            pass
        finally:
            try:
                self._file.close()
            except OSError:  # pragma: no cover
                pass
            self._file = None

    def finish(self) -> EmbeddingStore:
        if self.complete:
            return EmbeddingStore(self.folder)
        if self.rows == 0:
            self.abort()
            self._wipe()
            raise ValueError("data contains no samples; nothing to embed")
        n_meta = _metadata_length(self.metadata)
        if n_meta is not None and n_meta != self.rows:
            self.abort()
            raise ValueError(f"metadata has {n_meta} rows but the data gave {self.rows} samples")
        f = self._file
        self._checkpoint()
        f.seek(0)
        f.write(_npy_header(self.rows, self.dim))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        self._file = None
        manifest: dict[str, Any] = dict(self.info)
        manifest.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            count=self.rows,
            dim=self.dim,
            dtype="float32",
            created=_now_iso(),
            checksum="sha256:" + self._hash.hexdigest(),
            embeddings_file=EMBEDDINGS_FILE,
            metadata_file=None,
            metadata_format=None,
            simgap_version=_simgap_version(),
        )
        if self._replacing:
            # The old store ends here: from now on the folder is the new store,
            # interrupted (resumable) until its manifest is written.
            (self.folder / MANIFEST_FILE).unlink(missing_ok=True)
            _fsync_dir(self.folder)
        if self.metadata:
            name, fmt, dtypes = _write_metadata(self.folder, self.metadata)
            manifest.update(metadata_file=name, metadata_format=fmt, metadata_columns=dtypes)
        os.replace(self.folder / PARTIAL_FILE, self.folder / EMBEDDINGS_FILE)
        _fsync_dir(self.folder)
        _atomic_write_json(self.folder / MANIFEST_FILE, manifest)  # the commit point
        _fsync_dir(self.folder)
        (self.folder / PROGRESS_FILE).unlink()
        for stale in {PARQUET_FILE, CSV_FILE} - {manifest["metadata_file"]}:  # a replaced store's
            (self.folder / stale).unlink(missing_ok=True)
        _fsync_dir(self.folder)
        return EmbeddingStore(self.folder)


def save_embeddings(
    path: Any,
    embeddings: Any,
    *,
    metadata: Any = None,
    overwrite: bool = False,
    info: Mapping[str, Any] | None = None,
    chunk_rows: int = 65536,
) -> EmbeddingStore:
    """Write precomputed embeddings to a store folder (chunked, atomic).

    Parameters
    ----------
    path : str or os.PathLike
        The store folder; created if needed.  It must be new or empty unless
        ``overwrite=True``.
    embeddings : array_like or torch.Tensor, shape (n, d)
        Real numbers, n >= 1, stored as float32.  A memory-mapped input is
        copied ``chunk_rows`` rows at a time, so memory use stays bounded.
    metadata : mapping of str to sequence of length n, or DataFrame, optional
        Per-sample columns (numbers, booleans or strings).
    overwrite : bool, default False
        Replace an existing store at ``path``.  The old store stays complete
        and readable until the new one is: a failed overwrite leaves it intact.
    info : mapping, optional
        Extra JSON-serialisable fields for the manifest (e.g. ``model_class``,
        ``layer``, ``pooling``: null by default).
    chunk_rows : int, default 65536

    Returns
    -------
    EmbeddingStore

    Examples
    --------
    >>> import numpy as np, simgap, tempfile, os
    >>> folder = os.path.join(tempfile.mkdtemp(), "emb")
    >>> simgap.save_embeddings(folder, np.eye(3)).shape
    (3, 3)
    """
    from ._util.checks import as_positive_int

    arr = as_embeddings(embeddings, name="embeddings")
    if _is_torch_tensor(arr):
        arr = arr.detach().cpu().numpy()
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"embeddings must have at least one row and one column; got shape {arr.shape}")
    chunk_rows = as_positive_int(chunk_rows, "chunk_rows")
    cols = _metadata_columns(metadata)
    base = {"model_class": None, "layer": None, "pooling": None}
    if info is not None:
        if not isinstance(info, Mapping):
            raise TypeError(f"info must be a mapping, got {type(info).__name__}")
        try:
            json.dumps(dict(info))
        except TypeError as exc:
            raise TypeError(f"info must be JSON-serialisable ({exc})") from None
        base.update(info)
    writer = _StoreWriter(
        path, info=base, resume=False, overwrite=overwrite, metadata=cols,
        expected_count=arr.shape[0], checkpoint_every=1 << 30,
    )
    writer.start()
    try:
        for start in range(0, arr.shape[0], chunk_rows):
            writer.append(np.asarray(arr[start : start + chunk_rows]))  # checks NaN / Inf as float32
    except BaseException:
        writer.abort()
        writer._wipe()  # no resume for save_embeddings: leave nothing half-written (an old store intact)
        raise
    return writer.finish()
