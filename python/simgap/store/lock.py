"""The writer's lock on a store folder: one writer at a time.

Every writer of a store (:class:`~simgap.store.StoreWriter`, and through it
``Embedder.to_store``, :func:`~simgap.store.save_embeddings` and
:func:`~simgap.store.merge_stores`) holds an exclusive ``flock`` on
``.simgap.lock`` in the store folder from its first look at the folder to its
commit (or its abort).  A second writer does not wait: it raises
:class:`~simgap.store.StoreError` saying that the store is in use, naming the
folder, before it has touched any file.

The lock belongs to an open file, so the kernel releases it when the holder
dies, however it dies: a lock left by a killed process never blocks (there is
no PID file to go stale).  A holder removes the lock file before it lets go of
the lock, and whoever takes the lock checks that the file it locked is still
the one in the folder (if not, it tries again): the folder is therefore left
without a lock file after every write that ends normally, and a file left by a
killed writer is simply taken over.  Readers take no lock: they rely on the
manifest being written last, atomically.

On file systems that do not support ``flock`` (some network mounts) the write
goes ahead with a warning that concurrent writers cannot be detected there.
On platforms without ``fcntl`` (Windows) ``msvcrt.locking`` takes its place.
"""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path

from .format import LOCK_FILE, StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

__all__ = ["StoreLock", "lock_store"]

# errno values meaning "this file system cannot lock", as opposed to "somebody holds it"
_UNSUPPORTED = {errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
                getattr(errno, "ENOSYS", errno.EOPNOTSUPP)}
_ATTEMPTS = 100  # the lock file changes only when a holder lets go: a few rounds at most


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting: False if somebody holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False
    except PermissionError:  # pragma: no cover - msvcrt's (and some systems') "locked"
        return False
    return True


class StoreLock:
    """The exclusive lock on one store folder (see the module docstring).

    Made by :func:`lock_store`; :meth:`release` removes the lock file and lets
    go.  A lock that is dropped without ``release`` (its writer garbage
    collected) is released the same way; in a forked child it is never
    released (the parent holds it).
    """

    def __init__(self, folder: Path, fd: int | None) -> None:
        self.folder = folder
        self._fd = fd
        self._pid = os.getpid()

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (that order: nobody else can then
        lock a file that is about to be removed).  Never raises."""
        fd, self._fd = self._fd, None
        if fd is None or os.getpid() != self._pid:
            return
        try:
            os.unlink(self.folder / LOCK_FILE)
        except OSError:  # already gone, or Windows (an open file cannot be removed there)
            pass
        try:
            os.close(fd)
        except OSError:  # pragma: no cover
            pass

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


def lock_store(folder: Path) -> StoreLock:
    """Take the writer's lock on ``folder`` (which exists), without waiting.

    Raises
    ------
    StoreError
        Another writer (another process, or an unfinished writer in this one)
        holds the lock.
    """
    path = folder / LOCK_FILE
    for _ in range(_ATTEMPTS):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        try:
            locked = _try_lock(fd)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                os.close(fd)
                raise StoreError(f"could not lock the embedding store at {folder} ({exc})") from None
            os.close(fd)
            warnings.warn(
                f"the file system of {folder} does not support file locks ({exc}); writing without "
                "the writer's lock: run one writer at a time on this store",
                RuntimeWarning, stacklevel=3,
            )
            return StoreLock(folder, None)
        if not locked:
            os.close(fd)
            raise StoreError(
                f"the embedding store at {folder} is in use by another writer (it holds {LOCK_FILE}); "
                "wait for it to finish, or write to another folder"
            )
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return StoreLock(folder, fd)
        os.close(fd)  # its holder removed the file as we locked it: lock the new one
    raise StoreError(f"could not lock the embedding store at {folder}: {LOCK_FILE} keeps changing")  # pragma: no cover
