"""Sessions of a stored study, and how their liveness is known.

Every :class:`~simgap.SimOptimizer` is a :class:`Session` with a random token,
recorded (trial user attribute ``"session"``) on each trial it asks.  On a
SQLite file the folder ``<file>.simgap`` next to it holds

``lock``
    the study lock: held while a session asks, tells or opens the study, so
    that these are atomic across processes (and SQLite writes never collide);
``session-<token>``
    one file per open session, ``flock``'ed for its lifetime (it appears only
    under the study lock, already locked).

The kernel drops a ``flock`` when its holder dies (SIGKILL included), so a
session whose file is missing or not locked has ended: its pending trials are
abandoned, and the next session that asks hands them out again
(``pending="reask"``) or fails them (``pending="fail"``).  Elsewhere (a server
database, an optuna storage object, memory) only the sessions open in this
process are known to be alive: a new session takes the trials of the others
for abandoned when it opens the study (as a resume after a crash needs), and
only then.  On platforms without ``fcntl`` (Windows) ``msvcrt.locking`` takes
the place of ``flock``.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
import warnings
import weakref
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt

__all__ = ["Session", "open_storage", "storage_spec"]

_OPEN_SESSIONS: set[str] = set()  # tokens of the sessions open in this process
_ENDED_SESSIONS: set[str] = set()  # and of those that ended


def _sqlite_file(url: str) -> str | None:
    """The absolute path of the SQLite file a database URL names, or None (another
    database, an in-memory one, or a ``file:`` URI)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" \
            or u.database.startswith("file:"):
        return None
    return os.path.abspath(u.database)


def storage_spec(storage: Any) -> tuple[Any, str | None]:
    """``storage`` checked: (the argument as given, or a URL for a str / path), and the
    SQLite file it names (None when it names none)."""
    import optuna

    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        url = getattr(storage, "url", None)  # an RDBStorage on a SQLite file gets the file's locks too
        path = _sqlite_file(url) if isinstance(storage, optuna.storages.RDBStorage) and url else None
        return storage, path
    if not isinstance(storage, (str, os.PathLike)):
        raise TypeError(f"storage must be None, a file path, a database URL or an optuna storage; "
                        f"got {type(storage).__name__}")
    s = os.fspath(storage)
    if not isinstance(s, str) or not s:
        raise ValueError(f"storage must be None, a file path, a database URL or an optuna storage; got {storage!r}")
    if "://" in s:
        from sqlalchemy.exc import ArgumentError

        try:
            path = _sqlite_file(s)
        except ArgumentError as exc:
            raise ValueError(f"storage: {s!r} is not a database URL ({exc}); give None, a file path "
                             "(a SQLite file), a URL such as 'sqlite:///study.db' or "
                             "'postgresql://user@host/db', or an optuna storage") from None
        url = s
    else:
        path = os.path.abspath(s)
        url = f"sqlite:///{path}"
    if path is not None and not os.path.isdir(os.path.dirname(path)):
        raise ValueError(f"storage: the folder {os.path.dirname(path)!r} does not exist")
    return url, path


def open_storage(spec: Any):
    """The optuna storage for a checked ``storage`` (see :func:`storage_spec`)."""
    import optuna

    if spec is None:
        return optuna.storages.InMemoryStorage()
    if not isinstance(spec, str):
        return spec
    from sqlalchemy.exc import ArgumentError

    # SQLite: wait up to a minute for another writer's transaction (sqlite3's default is 5 s)
    kw = {"engine_kwargs": {"connect_args": {"timeout": 60.0}}} if spec.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(spec, **kw)
    except ArgumentError as exc:  # (NoSuchModuleError included: an unknown dialect or driver)
        raise ValueError(f"storage: {spec!r} is not a database URL SQLAlchemy can open ({exc}); give None, "
                         "a file path (a SQLite file), a URL such as 'sqlite:///study.db' or "
                         "'postgresql://user@host/db', or an optuna storage") from None
    except ImportError as exc:
        raise ImportError(f"storage {spec!r}: the database driver is not installed ({exc})") from exc


def _flock(fd: int, wait: bool) -> bool:
    """Take the exclusive lock on ``fd``; False if somebody holds it (``wait=False``)."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    while True:  # pragma: no cover - Windows
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            if not wait:
                return False
            time.sleep(0.02)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _end_session(token: str, lock: "_StudyLock | None") -> None:
    _OPEN_SESSIONS.discard(token)
    _ENDED_SESSIONS.add(token)
    if lock is not None:
        lock.close()


class _StudyLock:
    """The lock folder of a SQLite study (see above): the study lock and this session's file."""

    def __init__(self, folder: str, token: str):
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        self._pid = os.getpid()
        self._lock = os.open(os.path.join(folder, "lock"), os.O_RDWR | os.O_CREAT, 0o666)
        self._session = None
        try:
            with self:  # a session file appears only under the study lock, already locked
                fd = os.open(self._session_file(token), os.O_RDWR | os.O_CREAT, 0o666)
                if not _flock(fd, wait=False):  # pragma: no cover - a random 128-bit token
                    os.close(fd)
                    raise RuntimeError("session token collision")
                self._session = (fd, self._session_file(token))
        except BaseException:
            os.close(self._lock)
            raise

    def _session_file(self, token: str) -> str:
        return os.path.join(self.folder, f"session-{token}")

    def __enter__(self):
        _flock(self._lock, wait=True)
        return self

    def __exit__(self, *exc):
        _unlock(self._lock)

    def alive(self, token: str) -> bool:
        """Whether the session ``token`` is open (in any process); call under the study lock."""
        path = self._session_file(token)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            if not _flock(fd, wait=False):
                return True
            with contextlib.suppress(OSError):  # an ended session's file: tidied away
                os.unlink(path)
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        """Remove this session's file, then release it (never raises; a forked child leaves
        its parent's session alone)."""
        if os.getpid() != self._pid:
            return
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(OSError):
                os.unlink(session[1])
            with contextlib.suppress(OSError):
                os.close(session[0])
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):
                os.close(lock)


class Session:
    """One SimOptimizer's session of a study (see the module docstring): its ``token``, open
    until :meth:`end` (or until the object is garbage collected)."""

    def __init__(self, sqlite_path: str | None):
        self._sqlite_path = sqlite_path
        self._depth = 0
        self._abandoned: set[int] | None = None
        self._start()

    def _start(self) -> None:
        self.token = uuid.uuid4().hex
        self._pid = os.getpid()
        self._lock = None
        if self._sqlite_path is not None:
            try:
                self._lock = _StudyLock(self._sqlite_path + ".simgap", self.token)
            except OSError as exc:  # a folder we cannot write, a file system without flock
                warnings.warn(f"storage {self._sqlite_path!r}: cannot lock the study ({exc}); sessions "
                              "in other processes are then taken for ended", stacklevel=4)
        _OPEN_SESSIONS.add(self.token)
        self._finalizer = weakref.finalize(self, _end_session, self.token, self._lock)

    def renew(self) -> None:
        """After :meth:`end`, or in a forked child: a new session (the trials the old one
        asked are then abandoned, for this session to take back)."""
        if not self._finalizer.alive or os.getpid() != self._pid:
            self._finalizer.detach()
            self._start()

    def end(self) -> None:
        self._finalizer()

    @contextlib.contextmanager
    def locked(self):
        """The study lock (SQLite files; re-entrant within this session), else nothing."""
        if self._lock is None or self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._lock:
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0

    def alive(self, token: Any) -> bool:
        """Whether the session ``token`` (a trial's "session" attribute) is open."""
        if not isinstance(token, str):
            return False  # (trials asked before sessions were recorded)
        if token == self.token or token in _OPEN_SESSIONS:
            return True
        return self._lock is not None and self._lock.alive(token)

    def opened(self, running) -> None:
        """The study was just opened, with these running trials (under the study lock).
        Without the lock folder only the sessions of this process are known to be alive: the
        trials of every other session count as abandoned now, and only now."""
        if self._lock is None:
            self._abandoned = {t.number for t in running if not self.alive(t.user_attrs.get("session"))}

    def abandoned(self, running) -> list:
        """The running trials abandoned by their session, in trial order (under the study lock)."""
        if self._abandoned is not None:  # no lock folder: those taken for abandoned at the start,
            return [t for t in running     # and those of the sessions ended in this process since
                    if (t.number in self._abandoned or t.user_attrs.get("session") in _ENDED_SESSIONS)
                    and t.user_attrs.get("session") != self.token]
        alive: dict[Any, bool] = {}
        out = []
        for t in running:
            token = t.user_attrs.get("session")
            if token not in alive:
                alive[token] = self.alive(token)
            if not alive[token]:
                out.append(t)
        return out
