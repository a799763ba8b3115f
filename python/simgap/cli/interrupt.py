"""Ctrl-C at once, whatever the command is computing: the computation runs in a worker
thread while the main thread waits in short steps (:func:`run_interruptibly`), and an
interrupt ends the process without waiting for the worker (:func:`exit_now`)."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

__all__ = ["Abandoned", "run_interruptibly", "exit_now"]


class Abandoned(KeyboardInterrupt):
    """Ctrl-C while a computation ran in :func:`run_interruptibly`'s worker thread, which
    cannot be stopped: main() exits the process at once (``os._exit``) instead of returning."""


def run_interruptibly(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a worker thread, this thread waiting in short steps.

    Python runs its SIGINT handler only in the main thread, between bytecodes: during
    one long call into simgap's C++ kernels (they release the GIL) or scikit-learn's
    compiled code, Ctrl-C waited for the call to return (23 s in a large ``compare``).
    Here the main thread only waits, a tenth of a second at a time, so KeyboardInterrupt
    comes at once, whatever the phase.  The worker cannot be stopped: the interrupt is
    raised as :class:`Abandoned`, on which main() ends the process.  Returns ``fn``'s
    value, or raises its exception.
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name="simgap-compute", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        raise Abandoned() from None
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["value"]


def exit_now(code: int) -> None:
    """End the process with ``code`` now (``os._exit``), output flushed: a worker thread
    inside a C++ kernel cannot be stopped, and interpreter shutdown around it could wait
    for it or crash."""
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
