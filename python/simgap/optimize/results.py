"""SimOptimizer's results, read from its study: the best trial, the history and the
convergence data."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..space import space_frame

__all__ = ["best_trial", "complete_trials", "convergence_arrays", "history_frame"]


def complete_trials(study):
    import optuna

    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def best_trial(study):
    done = complete_trials(study)
    if not done:
        raise RuntimeError("no configuration has been evaluated yet; call tell() or optimize() first")
    return min(done, key=lambda t: (t.value, t.number))


def history_frame(study, space: Mapping):
    """Every trial as a pandas DataFrame (see :attr:`simgap.SimOptimizer.history`)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "round": t.user_attrs.get("round", -1),
               "order": t.user_attrs.get("order", -1), "state": t.state.name.lower(),
               "value": np.nan if t.value is None else float(t.value),
               "mmd2": float(t.user_attrs.get("mmd2", np.nan)),
               "n_samples": int(t.user_attrs.get("n_samples", 0))}
        for k in space:
            row[k] = t.params.get(k)
        rows.append(row)
    cols = ["trial", "round", "order", "state", "value", "mmd2", "n_samples", *space]
    return space_frame({c: [r[c] for r in rows] for c in cols}, space, columns=cols)


def convergence_arrays(study) -> dict[str, np.ndarray]:
    """See :meth:`simgap.SimOptimizer.convergence`."""
    done = sorted(complete_trials(study), key=lambda t: (t.user_attrs.get("order", 0), t.number))
    value = np.array([t.value for t in done], dtype=np.float64)
    return {
        "calls": np.arange(1, len(done) + 1),
        "value": value,
        "best": np.minimum.accumulate(value) if value.size else value,
        "mmd2": np.array([t.user_attrs.get("mmd2", np.nan) for t in done], dtype=np.float64),
        "round": np.array([t.user_attrs.get("round", -1) for t in done], dtype=np.int64),
        "trial": np.array([t.number for t in done], dtype=np.int64),
    }
