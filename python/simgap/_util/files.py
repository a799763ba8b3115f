"""The one atomic file writer, used by the embedding store, the reports and the CLI.

Every file simgap writes goes through a temporary file in the target's folder:
the data is written and fsync'd, the temporary file is renamed over the target
with ``os.replace`` and the folder is fsync'd (where the platform allows).  A
reader therefore sees the old file or the new one, never a half-written one,
and after a crash or power loss the target is one of the two as well.  On any
error (or Ctrl-C) the temporary file is removed and the old file is intact.

Modes are those of an ordinary ``open(path, "w")``: a new file gets
``0666 & ~umask`` (the temporary file is created with mode 0666 and the kernel
applies the umask, so the process umask is never read or changed), and a
replaced file keeps the mode of the file it replaces.

Temporary names are ``.simgap-<16 hex digits><suffix of the target>``: unique
per call (concurrent writers never collide), hidden, and ending like the
target, for writers (pandas, pyarrow) that look at the suffix.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

__all__ = [
    "TEMP_PREFIX",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_target",
    "fsync_dir",
    "is_temp_name",
    "replacing",
]

TEMP_PREFIX = ".simgap-"
_TEMP_NAME = re.compile(r"\.simgap-[0-9a-f]{16}(\.[^.]*)?\Z")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (a file name, no folder) is one of this module's temporary files,
    e.g. left behind by a process that was killed while writing."""
    return _TEMP_NAME.match(name) is not None


def check_target(path: Any, name: str = "path") -> str:
    """``path`` as a str, checked: a str or os.PathLike whose folder exists.

    Raises TypeError or FileNotFoundError naming the argument ``name``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name}: the folder {folder!r} does not exist")
    return path


def fsync_dir(path: Any) -> None:
    """Make a folder's entries (renames, new and removed files) durable; a no-op
    where folders cannot be opened (Windows)."""
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


def _create_temp(path: str) -> tuple[int, str]:
    """A new, empty temporary file beside ``path``: (open fd, its path).

    Created with O_EXCL and mode 0666, so the kernel applies the umask (and
    any default ACL) exactly as for an ordinary new file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    suffix = Path(path).suffix
    while True:
        tmp = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue


def _fsync_path(tmp: str) -> None:
    """fsync a file by name (written by someone else's code, e.g. a library)."""
    try:
        fd = os.open(tmp, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except PermissionError:  # a read-only file: enough for fsync on POSIX
        fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, path: str) -> None:
    """Give ``tmp`` the mode of the file it replaces (if any), rename it over
    ``path`` and make the rename durable."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        pass  # a new file: tmp already has 0666 less the umask
    else:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


@contextmanager
def replacing(path: Any, *, name: str = "path") -> Iterator[str]:
    """A temporary path to fill; on leaving the block it replaces ``path`` atomically.

    The temporary file exists, empty, beside ``path`` (same suffix).  Write it
    by name, or replace it (by name) with another file.  When the block ends
    normally the file is fsync'd, given its final mode and renamed over
    ``path``; when it raises, the temporary file is removed and ``path`` is
    left as it was.

    Examples
    --------
    >>> import os, tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "table.csv")
    >>> with replacing(target) as tmp:
    ...     with open(tmp, "w") as fh:
    ...         _ = fh.write("a,b\\n1,2\\n")
    >>> open(target).read()
    'a,b\\n1,2\\n'
    """
    path = check_target(path, name)
    fd, tmp = _create_temp(path)
    os.close(fd)
    try:
        yield tmp
        _fsync_path(tmp)
        _publish(tmp, path)
    except BaseException:
        _discard(tmp)
        raise


def atomic_write(path: Any, write: Callable[[str], Any], *, name: str = "path") -> str:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then replace ``path`` with it.

    For writers that take a file name (pandas ``to_csv``, pyarrow, a report's
    ``to_html``).  See :func:`replacing` for the guarantees.  Returns ``path``
    as a str.
    """
    with replacing(path, name=name) as tmp:
        write(tmp)
    return os.fspath(path)


def _write_new(path: Any, name: str, data: Any, mode: str, encoding: str | None) -> str:
    path = check_target(path, name)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    return path


def atomic_write_bytes(path: Any, data: bytes, *, name: str = "path") -> str:
    """Write ``data`` to ``path`` atomically and durably; returns ``path`` as a str."""
    return _write_new(path, name, data, "wb", None)


def atomic_write_text(path: Any, text: str, encoding: str = "utf-8", *, name: str = "path") -> str:
    """Write ``text`` to ``path`` atomically and durably, as ``open(path, "w")``
    would (the platform's newlines); returns ``path`` as a str."""
    return _write_new(path, name, text, "w", encoding)


def atomic_write_json(path: Any, obj: Mapping[str, Any], *, name: str = "path") -> str:
    """Write ``obj`` as JSON (indent 2, keys sorted, a final newline) atomically and durably."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"), name=name)
