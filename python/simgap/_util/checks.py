"""Checks of scalar options, named by argument, and the one seeded subsample."""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

__all__ = ["check_seed", "check_flag", "as_positive_int", "as_real", "subsample_rows"]


def check_seed(seed: Any, name: str = "seed") -> Any:
    """A seed for ``numpy.random.default_rng``: None, an integer >= 0, a
    SeedSequence or a Generator (or a RandomState where noted)."""
    if seed is None or isinstance(seed, (np.random.SeedSequence, np.random.Generator, np.random.RandomState)):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer or None, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {seed}")
    return int(seed)


def check_flag(value: Any, name: str) -> bool:
    """A bool option (a string such as "no" would otherwise count as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def subsample_rows(counts: Sequence[int], max_points: int, seed: Any) -> list[np.ndarray]:
    """The rows of each array in the seeded subsample of the pooled rows used by
    the median heuristic: ``default_rng(seed).choice(total, max_points,
    replace=False)`` when there are more than ``max_points`` rows, else all."""
    total = sum(counts)
    if total > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False))
    else:
        idx = np.arange(total)
    offsets = np.cumsum([0] + list(counts))
    return [idx[(idx >= offsets[k]) & (idx < offsets[k + 1])] - offsets[k] for k in range(len(counts))]
