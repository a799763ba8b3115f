"""Writing a store: :class:`StoreWriter` (chunked, durable, resumable; used by
``Embedder.to_store``) and :func:`save_embeddings`.

The rows go to ``embeddings.npy.partial``; every ``checkpoint_every`` batches
they are fsync'd and ``progress.json`` records, atomically, how many are valid.
``finish`` writes the final header in place, checks the data file against what
was written to it (its identity, header, size and the sha256 of its rows, read
back), renames it, writes the metadata table and the manifest last: the commit
point.  From ``start`` to the commit (or ``abort``) the writer holds the
store's lock (:mod:`simgap.store.lock`): a second writer is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._util.arrays import is_tensor
from .._util.checks import as_positive_int
from .._util.files import atomic_write_json, fsync_dir, is_temp_name
from .format import (
    CSV_FILE,
    DATA_FILES,
    EMBEDDINGS_FILE,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FIELDS,
    NPY_HEADER_BYTES,
    OWN_FILES,
    PARQUET_FILE,
    PARTIAL_FILE,
    PROGRESS_FILE,
    VERIFIED_FILE,
    StoreError,
    check_npy,
    hash_file,
    hash_file_rows,
    now_iso,
    npy_header,
    read_npy_header,
    read_progress,
    simgap_version,
)
from .lock import StoreLock, lock_store
from .reader import EmbeddingStore, as_embeddings
from .tables import metadata_columns, metadata_length, write_metadata
from .verified import file_keys, record_verified

__all__ = ["StoreWriter", "save_embeddings"]


def _is_temp(name: str) -> bool:
    """A temporary file of an atomic write (``name.tmp``: the temporary names of earlier versions)."""
    return is_temp_name(name) or name.endswith(".tmp")


class StoreWriter:
    """Appends float32 rows to a store folder durably; see the module docstring.

    Use: ``skip = w.start()``; ``w.append(rows)`` per batch; ``w.finish()`` at
    the end, or ``w.abort()`` on any exception (records the rows written so far
    for a resume) or ``w.discard()`` (removes them).  After ``start()``,
    ``w.complete`` is True when ``resume=True`` found an already complete
    store: nothing is to be written then.

    ``start()`` takes the store's lock (:mod:`simgap.store.lock`) and raises
    :class:`StoreError` ("in use") if another writer holds it; ``finish()``,
    ``abort()`` and ``discard()`` release it, as does ``start()`` when it
    raises or finds the store complete.
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
        n_meta = metadata_length(metadata)
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
        self._lock: StoreLock | None = None

    # -- setup ------------------------------------------------------------------

    def start(self) -> int:
        """Lock the store and look at it; returns the number of rows already
        stored (to skip).  Nothing is written before the lock is held."""
        folder = self.folder
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"path {folder} is a file; an embedding store is a folder")
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = lock_store(folder)
        try:
            skip = self._start()
        except BaseException:
            self._release()
            raise
        if self.complete:  # nothing to write
            self._release()
        return skip

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _start(self) -> int:
        folder = self.folder
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
                progress = read_progress(folder) or {}
                raise FileExistsError(
                    f"path {folder} holds an interrupted embedding store ({progress.get('rows', 0)} "
                    "rows written); pass resume=True to continue it or overwrite=True to start again"
                )
            self._wipe()
        elif folder.exists():
            others = sorted(p.name for p in folder.iterdir() if not _is_temp(p.name))
            foreign = [n for n in others if n not in OWN_FILES]
            if foreign:
                raise FileExistsError(
                    f"path {folder} is a folder with other files ({', '.join(foreign[:5])}); "
                    "an embedding store needs an empty or new folder"
                )
            self._wipe()
        return 0

    def _wipe(self) -> None:
        """Remove the store's files; while replacing a complete store, only the
        new store's (progress and partial data), so the old one stays intact."""
        if self._replacing:
            names = [PROGRESS_FILE, PARTIAL_FILE]
        else:  # the manifest goes first, so that nothing looks complete while the rest is removed
            names = [MANIFEST_FILE, PROGRESS_FILE, *sorted(DATA_FILES - {MANIFEST_FILE, PROGRESS_FILE}),
                     VERIFIED_FILE]
        for name in names:
            for p in (self.folder / name, self.folder / (name + ".tmp")):
                if p.exists():
                    p.unlink()
            if name == MANIFEST_FILE:
                fsync_dir(self.folder)
        if self.folder.is_dir():  # temporary files of writes that were interrupted
            for p in self.folder.iterdir():
                if is_temp_name(p.name):
                    p.unlink(missing_ok=True)
        fsync_dir(self.folder)

    def _check_same_embedder(self, recorded: Mapping[str, Any], what: str) -> None:
        for key in MODEL_FIELDS:
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
        progress = read_progress(folder)
        if progress is None or not partial.exists():
            # nothing durable was recorded: start from scratch
            self._wipe()
            return 0
        self._check_same_embedder(progress, "the interrupted store")
        rows, dim = progress["rows"], progress.get("dim")
        if not isinstance(dim, int) or dim < 1 or rows < 0:
            raise StoreError(f"{folder / PROGRESS_FILE} is corrupt (dim={dim!r}, rows={rows!r})")
        shape, dtype, _, offset = read_npy_header(partial)
        if offset != NPY_HEADER_BYTES or len(shape) != 2 or shape[1] != dim or dtype != np.dtype("<f4"):
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
        self._hash = hash_file_rows(partial, offset, rows * dim * 4)
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
            f.write(npy_header(0, self.dim))
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
            updated=now_iso(),
        )
        atomic_write_json(self.folder / PROGRESS_FILE, progress)
        self._since_checkpoint = 0

    def _close(self) -> None:
        """Record what was written and close the data file. Never raises."""
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

    def abort(self) -> None:
        """After an exception: record what was written (for a resume), close the file and
        release the store's lock. Never raises."""
        try:
            self._close()
        finally:
            self._release()

    def discard(self) -> None:
        """After an exception: remove what this writer wrote (a complete store it was
        replacing stays intact) and release the store's lock."""
        try:
            self._close()
            self._wipe()
        finally:
            self._release()

    def finish(self) -> EmbeddingStore:
        """Commit the store (see the module docstring), release its lock and return it, opened."""
        if self.complete:
            return EmbeddingStore(self.folder)
        try:
            self._commit()
        finally:
            self._release()
        return EmbeddingStore(self.folder, verify=False)  # just verified by _commit

    def _check_before_commit(self, written: os.stat_result) -> None:
        """Check that the data file is the one this writer wrote (``written``: its fstat),
        with the final header, the right size and the rows that were written (their sha256,
        read back); StoreError otherwise, and nothing is committed."""
        partial = self.folder / PARTIAL_FILE
        try:
            current = os.stat(partial)
        except FileNotFoundError:
            current = None
        if current is None or (current.st_dev, current.st_ino) != (written.st_dev, written.st_ino):
            raise StoreError(
                f"{partial} was removed or replaced while this writer held {self.folder}; nothing "
                "was committed: pass overwrite=True to start again"
            )
        try:
            offset = check_npy(partial, self.folder, self.rows, self.dim)
            digest = hash_file_rows(partial, offset, self.rows * self.dim * 4).hexdigest()
        except StoreError as exc:
            raise StoreError(
                f"the data file does not match the {self.rows} x {self.dim} rows written to it, so "
                f"nothing was committed ({exc}); pass overwrite=True to start again"
            ) from None
        if digest != self._hash.hexdigest():
            raise StoreError(
                f"{partial} does not hold the rows written to it (its rows hash to sha256:{digest}, "
                f"the rows written to sha256:{self._hash.hexdigest()}): it was modified while being "
                "written; nothing was committed: pass overwrite=True to start again"
            )

    def _commit(self) -> None:
        if self.rows == 0:
            self._close()
            self._wipe()
            raise ValueError("data contains no samples; nothing to embed")
        n_meta = metadata_length(self.metadata)
        if n_meta is not None and n_meta != self.rows:
            self._close()
            raise ValueError(f"metadata has {n_meta} rows but the data gave {self.rows} samples")
        f = self._file
        self._checkpoint()
        f.seek(0)
        f.write(npy_header(self.rows, self.dim))
        f.flush()
        os.fsync(f.fileno())
        written = os.fstat(f.fileno())
        f.close()
        self._file = None
        self._check_before_commit(written)
        manifest: dict[str, Any] = dict(self.info)
        manifest.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            count=self.rows,
            dim=self.dim,
            dtype="float32",
            created=now_iso(),
            checksum="sha256:" + self._hash.hexdigest(),
            embeddings_file=EMBEDDINGS_FILE,
            metadata_file=None,
            metadata_format=None,
            metadata_checksum=None,
            simgap_version=simgap_version(),
        )
        if self._replacing:
            # The old store ends here: from now on the folder is the new store,
            # interrupted (resumable) until its manifest is written.
            (self.folder / MANIFEST_FILE).unlink(missing_ok=True)
            fsync_dir(self.folder)
        if self.metadata:
            name, fmt, dtypes = write_metadata(self.folder, self.metadata)
            manifest.update(metadata_file=name, metadata_format=fmt, metadata_columns=dtypes,
                            metadata_checksum=hash_file(self.folder / name))
        os.replace(self.folder / PARTIAL_FILE, self.folder / EMBEDDINGS_FILE)
        fsync_dir(self.folder)
        keys = file_keys(self.folder, manifest)  # the files just checked, before anyone else may touch them
        atomic_write_json(self.folder / MANIFEST_FILE, manifest)  # the commit point (its rename fsync'd)
        (self.folder / PROGRESS_FILE).unlink()
        for stale in {PARQUET_FILE, CSV_FILE} - {manifest["metadata_file"]}:  # a replaced store's
            (self.folder / stale).unlink(missing_ok=True)
        fsync_dir(self.folder)
        record_verified(self.folder, manifest, keys)


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
    arr = as_embeddings(embeddings, name="embeddings")
    if is_tensor(arr):
        arr = arr.detach().cpu().numpy()
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"embeddings must have at least one row and one column; got shape {arr.shape}")
    chunk_rows = as_positive_int(chunk_rows, "chunk_rows")
    cols = metadata_columns(metadata)
    base: dict[str, Any] = dict.fromkeys(MODEL_FIELDS)  # null unless info gives them
    if info is not None:
        if not isinstance(info, Mapping):
            raise TypeError(f"info must be a mapping, got {type(info).__name__}")
        try:
            json.dumps(dict(info))
        except TypeError as exc:
            raise TypeError(f"info must be JSON-serialisable ({exc})") from None
        base.update(info)
    writer = StoreWriter(
        path, info=base, resume=False, overwrite=overwrite, metadata=cols,
        expected_count=arr.shape[0], checkpoint_every=1 << 30,
    )
    writer.start()
    try:
        for start in range(0, arr.shape[0], chunk_rows):
            writer.append(np.asarray(arr[start : start + chunk_rows]))  # checks NaN / Inf as float32
    except BaseException:
        writer.discard()  # no resume for save_embeddings: leave nothing half-written (an old store intact)
        raise
    return writer.finish()
