"""Writing the command line's outputs: files atomically (a temporary file in the target's
folder, then ``os.replace``), checked before any long computation; the report's summary on
stdout."""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Callable

from .._util.files import atomic_write as atomic_write_file

__all__ = ["atomic_write", "check_output", "write_text", "print_summary"]


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(tmp)`` on a temporary path in the target's folder, then ``os.replace`` it.

    The checks of :func:`check_output` first, then :func:`simgap._util.files.atomic_write`
    (the temporary name keeps the target's suffix, for writers that look at it).
    """
    path = os.path.abspath(os.fspath(path))
    check_output(path)
    return atomic_write_file(path, write)


def check_output(path: str) -> None:
    """Fail early (before any long computation) when an output file cannot be written there."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")


def write_text(path: str, text: str) -> str:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def print_summary(report: Any) -> None:
    """``report.summary()`` on stdout.  Not a terminal: rendered to a buffer first and
    written here, so that a reader that went away raises BrokenPipeError (exit 141);
    rich's own handler exits with 1 and no message."""
    if sys.stdout.isatty():
        report.summary()
        return
    buf = io.StringIO()
    report.summary(file=buf)  # the same text: rich sizes and colours a non-terminal file alike
    sys.stdout.write(buf.getvalue())
