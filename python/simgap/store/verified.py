"""The verification record of a store: which files were last checked against
the checksums in its manifest, so that opening a store is safe by default and
free after the first time.

``.simgap.verified.json`` in the store folder records, for the data file and
the metadata file, their size, mtime and ctime (ns) and inode when their
content was found to match the manifest's ``checksum`` and
``metadata_checksum`` (both recorded too).  A later open with
``verify="auto"`` skips the hashing when every file still has the recorded
keys and the manifest the recorded checksums; anything else (a file
rewritten, replaced, truncated, touched, copied; the manifest edited) makes
it hash again.

A file changed within the same tick of the file system's clock as the record
was written could keep its keys, as in git's "racily clean" index entries: a
record is therefore trusted only for files whose mtime and ctime are strictly
older than the record itself, and a file not yet older is checked again.  The
record is written with the atomic writer; where it cannot be written (a
read-only folder, a full disk) the store is still verified, only not
remembered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .._util.files import atomic_write_json
from .format import EMBEDDINGS_FILE, VERIFIED_FILE

__all__ = ["file_keys", "is_verified", "record_verified"]

_FORMAT = "simgap.verified"
_VERSION = 1


def _data_files(manifest: Mapping[str, Any]) -> list[str]:
    """The files a manifest's checksums cover: the rows, and the metadata table if any."""
    names = [EMBEDDINGS_FILE]
    if manifest.get("metadata_file"):
        names.append(manifest["metadata_file"])
    return names


def file_keys(folder: Path, manifest: Mapping[str, Any]) -> dict[str, dict[str, int]] | None:
    """{file name: its size, mtime_ns, ctime_ns and inode} for the files the
    manifest's checksums cover; None if one of them cannot be read."""
    keys = {}
    for name in _data_files(manifest):
        try:
            st = os.stat(folder / name)
        except OSError:
            return None
        keys[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                      "inode": st.st_ino}
    return keys


def _record(manifest: Mapping[str, Any], keys: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "format_version": _VERSION,
        "checksum": manifest["checksum"],
        "metadata_checksum": manifest.get("metadata_checksum"),
        "files": dict(keys),
    }


def is_verified(folder: Path, manifest: Mapping[str, Any]) -> bool:
    """Whether the store's files are, by their keys, the ones last found to match ``manifest``."""
    try:
        with open(folder / VERIFIED_FILE, "rb") as f:
            written_ns = os.fstat(f.fileno()).st_mtime_ns
            recorded = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):  # none, unreadable or damaged: verify again
        return False
    keys = file_keys(folder, manifest)
    if keys is None or recorded != _record(manifest, keys):
        return False
    # Racily clean: a file changed in the record's own clock tick may keep its keys.
    return all(max(k["mtime_ns"], k["ctime_ns"]) < written_ns for k in keys.values())


def record_verified(folder: Path, manifest: Mapping[str, Any], keys: Mapping[str, Any] | None) -> None:
    """Remember that the files with ``keys`` match ``manifest``; never raises for lack of room
    or permission (the next open then verifies again)."""
    if keys is None:
        return
    try:
        atomic_write_json(folder / VERIFIED_FILE, _record(manifest, keys))
    except OSError:
        pass
