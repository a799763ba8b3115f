"""The store's on-disk format: file names, the manifest schema, the ``.npy``
header, the progress record, and the checks that tell a complete store from a
damaged or interrupted one.  See :mod:`simgap.store` for the layout.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import struct
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = [
    "CSV_FILE",
    "DATA_FILES",
    "EMBEDDINGS_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MANIFEST_FIELDS",
    "MANIFEST_FILE",
    "MODEL_FIELDS",
    "NPY_HEADER_BYTES",
    "OWN_FILES",
    "PARQUET_FILE",
    "PARTIAL_FILE",
    "PROGRESS_FILE",
    "RESUME_HINT",
    "StoreError",
    "VERIFIED_FILE",
    "check_manifest",
    "check_npy",
    "hash_file",
    "hash_file_rows",
    "manifest_file",
    "now_iso",
    "npy_header",
    "read_npy_header",
    "read_progress",
    "simgap_version",
]

FORMAT = "simgap.embeddings"
FORMAT_VERSION = 1

EMBEDDINGS_FILE = "embeddings.npy"
PARTIAL_FILE = "embeddings.npy.partial"
MANIFEST_FILE = "manifest.json"
PROGRESS_FILE = "progress.json"
PARQUET_FILE = "metadata.parquet"
CSV_FILE = "metadata.csv"
# Held (flock) by the one process writing the store; removed when it is done.
LOCK_FILE = ".simgap.lock"
# Which files were last checked against the manifest's checksums (see simgap.store.verified).
VERIFIED_FILE = ".simgap.verified.json"
# The files that make up a store (or an interrupted one): removed when a store is wiped.
DATA_FILES = frozenset({EMBEDDINGS_FILE, PARTIAL_FILE, MANIFEST_FILE, PROGRESS_FILE, PARQUET_FILE, CSV_FILE})
# Every file a store folder may hold: anything else is a foreign file.
OWN_FILES = DATA_FILES | {LOCK_FILE, VERIFIED_FILE}

# The manifest fields that name the embedder: a resumed or merged store must agree on them.
MODEL_FIELDS = ("model_class", "layer", "pooling")

# The fields every manifest has, with their JSON types.
MANIFEST_FIELDS = {
    "format": str,
    "format_version": int,
    "count": int,
    "dim": int,
    "dtype": str,
    "checksum": str,
    "created": str,
}

# Every .npy this package writes has a header of exactly this many bytes, so the
# final shape can be written in place over the provisional one.
NPY_HEADER_BYTES = 128
_HASH_BLOCK_BYTES = 8 << 20  # rows are re-read for checksums in blocks of this size
RESUME_HINT = "resume it with Embedder.to_store(..., resume=True)"


class StoreError(ValueError):
    """An embedding store is incomplete, damaged, or incompatible with the request.

    The message names the store's path and says what is wrong (missing or
    corrupt manifest, truncated data, count or checksum mismatch, ...).
    """


# ----------------------------------------------------------------------------
# The .npy data file
# ----------------------------------------------------------------------------


def npy_header(count: int, dim: int) -> bytes:
    """A version 1.0 .npy header for float32 (count, dim), padded to NPY_HEADER_BYTES."""
    body = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (count, dim)
    room = NPY_HEADER_BYTES - 10
    body = body.ljust(room - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + body.encode("latin1")


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
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
        result = tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran), int(offset)
    except Exception as exc:  # any parser error (tokenize.TokenError, struct.error, ...) means damage
        raise StoreError(f"{path} has a damaged .npy header ({type(exc).__name__}: {exc})") from None
    return result


def check_npy(epath: Path, folder: Path, count: int, dim: int) -> int:
    """Check that ``epath`` is a C-order float32 (count, dim) .npy whose size
    matches its header; returns the data offset.  StoreError says what is wrong."""
    if not epath.exists():
        raise StoreError(f"the embedding store at {folder} is damaged: {epath.name} is missing")
    shape, dtype, fortran, offset = read_npy_header(epath)
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
    if n != count:
        raise StoreError(
            f"count mismatch in {folder}: {MANIFEST_FILE} says count={count} but "
            f"{epath.name} holds {n} rows"
        )
    if d != dim:
        raise StoreError(
            f"dimension mismatch in {folder}: {MANIFEST_FILE} says dim={dim} but "
            f"{epath.name} has {d} columns"
        )
    return offset


def hash_file(path: Path) -> str:
    """``"sha256:<hex>"`` of a whole file (a metadata table), read in blocks."""
    return "sha256:" + hash_file_rows(path, 0, path.stat().st_size).hexdigest()


def hash_file_rows(path: Path, offset: int, nbytes: int):
    """The sha256 object of ``nbytes`` bytes of ``path`` from ``offset``, read in blocks."""
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


# ----------------------------------------------------------------------------
# The manifest and the progress record
# ----------------------------------------------------------------------------


def check_manifest(manifest: Any, mpath: Path) -> dict[str, Any]:
    """Check a parsed manifest against the schema; returns it.  StoreError says what is wrong."""
    if not isinstance(manifest, dict):
        raise StoreError(f"{mpath} is corrupt: expected a JSON object, got {type(manifest).__name__}")
    for key, typ in MANIFEST_FIELDS.items():
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
    if not isinstance(manifest.get("metadata_checksum", ""), (str, type(None))):
        raise StoreError(
            f"{mpath} is corrupt: field 'metadata_checksum' should be str, got "
            f"{manifest['metadata_checksum']!r}"
        )
    if manifest["count"] < 0 or manifest["dim"] < 1:
        raise StoreError(
            f"{mpath} is corrupt: count={manifest['count']}, dim={manifest['dim']}"
        )
    return manifest


def manifest_file(manifest: Mapping[str, Any]) -> str:
    """The data file a manifest names (always EMBEDDINGS_FILE in this format version)."""
    name = manifest.get("embeddings_file", EMBEDDINGS_FILE)
    if name != EMBEDDINGS_FILE:
        raise StoreError(f"manifest is corrupt: embeddings_file={name!r}, expected {EMBEDDINGS_FILE!r}")
    return name


def read_progress(folder: Path) -> dict[str, Any] | None:
    """The progress record of an interrupted store, or None if there is none."""
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


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. ``2024-05-01T12:00:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def simgap_version() -> str:
    """The installed simgap version, recorded in manifests."""
    try:
        return version("simgap")
    except PackageNotFoundError:  # pragma: no cover - source tree
        return "0+unknown"
