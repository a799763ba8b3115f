"""Closed-loop search for simulator configurations that close the latent gap:
:class:`SimOptimizer`, an ask/tell loop over Optuna's samplers.

The package: :mod:`.optimizer` (:class:`SimOptimizer`), :mod:`.sessions` (the
storage, and the sessions sharing a stored study: which are alive, the study
lock) and :mod:`.results` (the best trial, the history and the convergence
data).  ``simgap.optimize.SimOptimizer`` is the class (re-exported by
:mod:`simgap`).
"""

from .optimizer import SimOptimizer

__all__ = ["SimOptimizer"]
