"""Reading a store: :class:`EmbeddingStore` (opened and checked, rows
memory-mapped), :func:`load_embeddings` and :func:`as_embeddings`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._util.arrays import is_tensor
from .format import (
    CSV_FILE,
    MANIFEST_FILE,
    PARQUET_FILE,
    PARTIAL_FILE,
    RESUME_HINT,
    StoreError,
    check_manifest,
    check_npy,
    hash_file,
    hash_file_rows,
    manifest_file,
    read_npy_header,
    read_progress,
)
from .tables import read_metadata
from .verified import file_keys, is_verified, record_verified

__all__ = ["EmbeddingStore", "as_embeddings", "load_embeddings"]


def _check_verify(verify: Any) -> bool | str:
    """The ``verify`` argument, checked: True, False or "auto"."""
    if isinstance(verify, (bool, np.bool_)):
        return bool(verify)
    if isinstance(verify, str) and verify == "auto":
        return "auto"
    raise ValueError(f"verify must be True, False or 'auto'; got {verify!r}")


class EmbeddingStore:
    """An opened, complete embedding store (read-only).

    Opening checks the manifest (present, valid JSON, required fields), the
    data file (present, a float32 .npy of shape (count, dim) whose size
    matches its header) and the metadata table (present, ``count`` rows);
    anything wrong raises :class:`StoreError` saying what.  By default it also
    checks the content against the manifest's checksums, once: see
    ``verify``.

    Parameters
    ----------
    path : str or os.PathLike
        The store folder.
    verify : {"auto", True, False}, default "auto"
        Check the content against the checksums in the manifest (as
        :meth:`verify` does): the sha256 of the rows and of the metadata file.

        - ``"auto"``: on the first open, and again whenever a file has
          changed since (its size, mtime, ctime or inode differ from those
          recorded).  A successful check is remembered in the store folder
          (``.simgap.verified.json``), so later opens do not read the rows.
          Where the folder is read-only the check is made on every open.
        - ``True``: check on every open (and remember it).
        - ``False``: do not check (an explicit opt-out: a damaged store then
          gives wrong numbers silently).  The structure (header, sizes,
          counts) is checked in every case.

        Stores written before the metadata checksum existed (their manifest
        has no ``metadata_checksum``) still open: their rows are checked,
        their metadata file only for its presence and row count.  Rewrite
        such a store (e.g. with :func:`~simgap.store.merge_stores` of it alone)
        to add the checksum.

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

    def __init__(self, path: Any, *, verify: bool | str = "auto") -> None:
        verify = _check_verify(verify)
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
        if verify is True or (verify == "auto" and not is_verified(self.path, self.manifest)):
            self.verify()

    # -- checks ---------------------------------------------------------------

    def _read_manifest(self) -> dict[str, Any]:
        mpath = self.path / MANIFEST_FILE
        if not mpath.exists():
            progress = read_progress(self.path)
            if progress is not None:
                raise StoreError(
                    f"the embedding store at {self.path} is incomplete: writing was interrupted "
                    f"after {progress.get('rows', 0)} rows and it has no {MANIFEST_FILE}; "
                    f"{RESUME_HINT}"
                )
            if (self.path / PARTIAL_FILE).exists():
                raise StoreError(
                    f"the embedding store at {self.path} is incomplete: writing was interrupted "
                    f"before any rows were recorded; {RESUME_HINT}"
                )
            raise StoreError(f"{self.path} is not an embedding store: {MANIFEST_FILE} is missing")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{mpath} is corrupt: not valid JSON ({exc})") from None
        return check_manifest(manifest, mpath)

    def _open_embeddings(self) -> np.ndarray:
        epath = self.path / manifest_file(self.manifest)
        offset = check_npy(epath, self.path, self.count, self.dim)
        if self.count == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.memmap(epath, dtype=np.float32, mode="r", offset=offset, shape=(self.count, self.dim))

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
        """Recompute the sha256 of the rows and of the metadata file; raise StoreError
        if either differs from the manifest.

        A successful check is remembered in the store folder (see ``verify`` of
        the class), unless a file changed while it was read.  A manifest without
        ``metadata_checksum`` (written before it existed) has its rows checked only.
        """
        before = file_keys(self.path, self.manifest)
        epath = self.path / manifest_file(self.manifest)
        _, _, _, offset = read_npy_header(epath)
        digest = "sha256:" + hash_file_rows(epath, offset, self.count * self.dim * 4).hexdigest()
        if digest != self.manifest["checksum"]:
            raise StoreError(
                f"checksum mismatch in {self.path}: the rows hash to {digest} but "
                f"{MANIFEST_FILE} records {self.manifest['checksum']}; the data was modified or damaged"
            )
        name, recorded = self.manifest.get("metadata_file"), self.manifest.get("metadata_checksum")
        if name and recorded is not None:
            digest = hash_file(self.path / name)
            if digest != recorded:
                raise StoreError(
                    f"checksum mismatch in {self.path}: {name} hashes to {digest} but "
                    f"{MANIFEST_FILE} records {recorded}; the metadata was modified or damaged"
                )
        if before is not None and file_keys(self.path, self.manifest) == before:
            record_verified(self.path, self.manifest, before)

    # -- access -----------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, np.ndarray] | None:
        """Per-sample metadata as {column: 1-D array of length count}, or None."""
        if self._metadata is None and self.manifest.get("metadata_file"):
            name = self.manifest["metadata_file"]
            fmt = self.manifest.get("metadata_format", "parquet" if name == PARQUET_FILE else "csv")
            cols = read_metadata(self.path / name, fmt, self.manifest.get("metadata_columns", {}))
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


def load_embeddings(
    path: Any, *, verify: bool | str = "auto"
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """Open an embedding store: the rows memory-mapped, and the metadata.

    Parameters
    ----------
    path : str or os.PathLike
        A store folder written by :meth:`Embedder.to_store` or :func:`save_embeddings`.
    verify : {"auto", True, False}, default "auto"
        Check the content against the manifest's checksums: ``"auto"`` on the
        first open and after any change to the files (the result is
        remembered in the store folder, so later opens are free), ``True``
        every time, ``False`` never (an explicit opt-out).  See
        :class:`EmbeddingStore`.

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
        The store is incomplete (an interrupted write: resume it) or damaged
        (a checksum mismatch included); the message says what is wrong.

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


def as_embeddings(obj: Any, *, name: str = "embeddings", verify: bool | str = "auto") -> Any:
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
    verify : {"auto", True, False}, default "auto"
        For a store path: check its content against the manifest's checksums
        (``"auto"``: on the first open and after any change; see
        :class:`EmbeddingStore`).  An opened :class:`EmbeddingStore` is used
        as it was opened.

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
    verify = _check_verify(verify)
    if obj is None:
        raise TypeError(f"{name} must be an array of shape (n, d), a tensor or a store path; got None")
    if isinstance(obj, EmbeddingStore):
        return obj.embeddings
    if isinstance(obj, (str, os.PathLike)):
        return EmbeddingStore(obj, verify=verify).embeddings
    if is_tensor(obj):
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

