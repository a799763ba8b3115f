"""Validation at the public boundary: every public function checks its inputs
here and names the offending argument; the compiled kernels trust what they get.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .._util.arrays import is_tensor


# Rows checked for NaN/Inf per step, so the check never allocates more than a
# few MB whatever the input size.
_FINITE_CHUNK_ELEMENTS = 1 << 22

# float32 inputs whose largest magnitude lies outside this range are computed
# in float64 (an exact conversion): above it, squared norms and Gram products
# (sums of d products) approach float32's overflow at 3.4e38; below it,
# products fall towards its subnormal range (1.2e-38) and lose digits.  All
# zeros stay float32 (exact).
FLOAT32_MAGNITUDE = (1e-15, 1e15)


def float32_in_range(magnitude: float) -> bool:
    """Whether float32 arithmetic holds for data whose largest |value| is ``magnitude``."""
    lo, hi = FLOAT32_MAGNITUDE
    return magnitude == 0.0 or lo <= magnitude <= hi


def as_matrix(x: Any, name: str) -> np.ndarray:
    """A 2-D float32/float64 NumPy view of ``x`` (copied only when needed).

    ``x`` may be an array, a CPU tensor, an :class:`~simgap.EmbeddingStore` or
    the path of one (its rows are memory-mapped, not read into memory).

    Integer and boolean inputs become float64, float16 becomes float32;
    float32 inputs whose largest magnitude is outside ``FLOAT32_MAGNITUDE``
    (1e-15 .. 1e15), where float32 products would overflow or underflow, become
    float64.  Complex, object and string dtypes raise TypeError; non-2-D, empty
    or non-finite inputs raise ValueError.
    """
    if x is None:
        raise TypeError(f"{name} must be an array of shape (n_samples, n_features), got None")
    if isinstance(x, (str, os.PathLike)) or type(x).__name__ == "EmbeddingStore":
        # An embedding store (or its folder): its rows, memory-mapped.
        from ..store import as_embeddings

        x = as_embeddings(x, name=name)
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}; this function needs CPU data")
        if x.is_complex():
            raise TypeError(f"{name} has complex dtype {x.dtype}; expected real floating point")
        x = x.detach()
        if x.dtype in (_torch().float16, _torch().bfloat16):
            x = x.float()
        x = x.resolve_conj().resolve_neg().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; expected real floating point")
    if kind in "biu":
        arr = arr.astype(np.float64)
    elif kind == "f":
        if arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)
        elif arr.dtype.itemsize > 8:
            arr = arr.astype(np.float64)
    else:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; expected a real numeric dtype (float32 or float64)"
        )
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {arr.ndim}-D "
            f"with shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; at least one sample is needed")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least one feature is needed")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if any(s % arr.itemsize for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    magnitude = check_finite(arr, name)
    if arr.dtype == np.float32 and not float32_in_range(magnitude):
        arr = arr.astype(np.float64)
    return arr


def check_finite(arr: np.ndarray, name: str) -> float:
    """Raise ValueError naming the first NaN or Inf; return the largest |value|
    (0 for no values).  One pass in chunks of rows, no full-size temporary."""
    rows = max(1, _FINITE_CHUNK_ELEMENTS // max(1, arr.shape[-1]))
    magnitude = 0.0
    for start in range(0, arr.shape[0], rows):
        block = arr[start : start + rows]
        if block.size == 0:
            continue
        lo, hi = float(block.min()), float(block.max())  # NaN propagates, Inf shows
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = np.argwhere(~np.isfinite(block))[0]
            where = (start + int(bad[0]),) + tuple(int(b) for b in bad[1:])
            raise ValueError(f"{name} contains NaN or Inf (first at index {where})")
        magnitude = max(magnitude, -lo, hi)
    return magnitude


def _torch():
    import torch

    return torch


def common_dtype(*arrays: np.ndarray) -> np.dtype:
    """float64 if any input is float64, else float32."""
    if any(a.dtype == np.float64 for a in arrays):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return arr if arr.dtype == dtype else arr.astype(dtype)


def check_same_features(x: np.ndarray, y: np.ndarray, xname: str = "x", yname: str = "y") -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{xname} has {x.shape[1]} columns but {yname} has {y.shape[1]}; "
            "both must have the same number of features"
        )


def as_weights(w: Any, n: int, name: str) -> np.ndarray | None:
    """Non-negative sample weights of length n, normalised to sum 1 (float64)."""
    if w is None:
        return None
    if is_tensor(w):
        w = w.detach().cpu().numpy()
    arr = np.asarray(w)
    if arr.dtype.kind == "c" or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of length {n}; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but the data has {n} rows")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative; found {arr.min()}")
    with np.errstate(over="ignore"):
        overflows = not np.isfinite(arr.sum())
    if overflows:  # huge weights: their sum overflows; scaled by a power of two (exact)
        arr = np.ldexp(arr, -int(np.frexp(arr.max())[1]))
    total = arr.sum()
    if not total > 0:
        raise ValueError(f"{name} are all zero; at least one weight must be positive")
    return np.ascontiguousarray(arr / total)


def same_memory(x: np.ndarray, y: np.ndarray) -> bool:
    """True when x and y are views of exactly the same elements."""
    return (
        x.shape == y.shape
        and x.dtype == y.dtype
        and x.strides == y.strides
        and x.__array_interface__["data"][0] == y.__array_interface__["data"][0]
    )


def pooled_mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of all rows of all arrays, accumulated in float64 (no pooled copy)."""
    total = sum(a.sum(axis=0, dtype=np.float64) for a in arrays)
    count = sum(a.shape[0] for a in arrays)
    return np.ascontiguousarray(total / count, dtype=np.float64)
