"""The ``simgap`` command line: the analysis on the user's own files, and the demo.

Every command has ``--help``.  Errors are one line on stderr and a documented exit code
(:data:`EXIT_CODES`); ``--debug`` adds the traceback.  Output files are written atomically
(a temporary file in the same folder, then ``os.replace``).

The package: :mod:`.commands` (the commands, their parser and :func:`main`), :mod:`.inputs`
(reading embeddings, parameters and labels), :mod:`.outputs` (writing files and the summary),
:mod:`.model` (``embed``'s model and images) and :mod:`.interrupt` (Ctrl-C at once).
"""

from __future__ import annotations

from .commands import (EXIT_CODES, EXIT_ERROR, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_PIPE, EXIT_USAGE,
                       build_parser, main)
from .inputs import EMBEDDING_FORMATS, InputError, load_labels, load_matrix, load_params
from .interrupt import Abandoned, run_interruptibly
from .outputs import atomic_write

__all__ = [
    "main",
    "build_parser",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_INPUT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_PIPE",
    "EXIT_CODES",
    "EMBEDDING_FORMATS",
    "InputError",
    "load_matrix",
    "load_params",
    "load_labels",
    "atomic_write",
    "Abandoned",
    "run_interruptibly",
]
