"""On-disk embedding stores: float32 rows in a memory-mapped ``.npy``, a JSON
manifest and optional per-sample metadata, written in chunks and resumable.

Layout of a store folder::

    embeddings.npy        float32, shape (count, dim), C order (read with mmap)
    manifest.json         model class, layer, pooling, dim, count, dtype, creation
                          time, sha256 of the rows and of the metadata file;
                          written last: a store is complete exactly when its
                          manifest exists
    metadata.parquet      optional per-sample columns (metadata.csv without pyarrow)
    .simgap.verified.json which files were last found to match the manifest's
                          checksums (size, mtime, ctime, inode): later opens
                          skip the hashing (:mod:`simgap.store.verified`)
    .simgap.lock          only while a writer holds the store
                          (:mod:`simgap.store.lock`)

While a store is being written the rows go to ``embeddings.npy.partial`` and
``progress.json`` records, durably (data fsync'd first, then the progress file
written to a temporary name, fsync'd and renamed), how many rows are valid.
An interrupted run (exception, Ctrl-C, killed process, power loss) therefore
leaves no manifest, so it can never be mistaken for a complete store, and
``resume=True`` continues from the last recorded row.  One writer at a time:
a second one is refused with :class:`StoreError` ("in use") while the first
holds the lock, and a writer checks the data file against the rows it wrote
before it commits the manifest.

Opening a store checks its structure always and its checksums by default
(``verify="auto"``: the first time, and after any change to its files).
Manifests written before ``metadata_checksum`` existed still open; their
metadata file is then not checksummed.

Modules, bottom to top: ``format`` (file names, manifest schema, ``.npy``
header, checks), ``tables`` (metadata columns), ``verified`` (the
verification record), ``reader`` (:class:`EmbeddingStore`,
:func:`load_embeddings`, :func:`as_embeddings`), ``lock`` (the writer's lock),
``writer`` (:class:`StoreWriter`, :func:`save_embeddings`) and ``merge``
(:func:`merge_stores`).  Files are written through :mod:`simgap._util.files`.
"""

from .format import (
    CSV_FILE,
    EMBEDDINGS_FILE,
    FORMAT,
    FORMAT_VERSION,
    LOCK_FILE,
    MANIFEST_FILE,
    PARQUET_FILE,
    PARTIAL_FILE,
    PROGRESS_FILE,
    VERIFIED_FILE,
    StoreError,
)
from .merge import merge_stores
from .reader import EmbeddingStore, as_embeddings, load_embeddings
from .tables import metadata_columns
from .writer import StoreWriter, save_embeddings

__all__ = [
    "EmbeddingStore",
    "StoreError",
    "StoreWriter",
    "as_embeddings",
    "load_embeddings",
    "merge_stores",
    "metadata_columns",
    "save_embeddings",
    "CSV_FILE",
    "EMBEDDINGS_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "PARQUET_FILE",
    "PARTIAL_FILE",
    "PROGRESS_FILE",
    "VERIFIED_FILE",
]
