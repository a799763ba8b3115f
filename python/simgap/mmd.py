"""Maximum mean discrepancy (MMD^2) between two samples, computed with the
fused kernel sums of the C++ core (the n x m kernel matrix is never formed).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _C
from ._backend import device_of, require_cpu
from ._validation import as_matrix, as_weights, cast, check_same_features, common_dtype, same_memory
from .kernels import KernelSpec, resolve_kernel

__all__ = ["mmd2", "mmd2_batch"]

_ESTIMATORS = ("unbiased", "biased")


def _check_estimator(estimator: Any, weighted: bool) -> str:
    if estimator is None:
        return "biased" if weighted else "unbiased"
    if not isinstance(estimator, str) or estimator.lower() not in _ESTIMATORS:
        raise ValueError(f"estimator must be one of {_ESTIMATORS} (or None); got {estimator!r}")
    return estimator.lower()


def _self_term(z: np.ndarray, w: np.ndarray | None, spec: KernelSpec, unbiased: bool, name: str) -> float:
    """E k(z, z') over distinct pairs (unbiased) or all pairs (biased)."""
    n = z.shape[0]
    center = z.sum(axis=0, dtype=np.float64) / n if spec.uses_distance else None
    s = _C.kernel_sum(z, z, w, w, *spec.args(), center, True, unbiased, True)
    if w is None:
        return s / (n * (n - 1)) if unbiased else s / (n * n)
    if not unbiased:
        return s
    norm = 1.0 - float(np.dot(w, w))
    if norm <= 1e-12:
        raise ValueError(f"{name}: the unbiased estimator needs positive weight on at least two samples")
    return s / norm


def _cross_term(x: np.ndarray, y: np.ndarray, a: np.ndarray | None, b: np.ndarray | None,
                spec: KernelSpec) -> float:
    """E k(x, y) over all pairs."""
    same = same_memory(x, y)
    center = None
    if spec.uses_distance:
        center = (x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / (
            x.shape[0] + y.shape[0]
        )
    sym = same and a is b
    s = _C.kernel_sum(x, y, a, a if sym else b, *spec.args(), center, same, False, sym)
    if a is None and b is None:
        return s / (x.shape[0] * y.shape[0])
    if a is None:
        s /= x.shape[0]
    if b is None:
        s /= y.shape[0]
    return s


def mmd2(
    x: Any,
    y: Any,
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    estimator: str | None = None,
    x_weights: Any = None,
    y_weights: Any = None,
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
) -> float:
    r"""Squared maximum mean discrepancy between the samples x and y.

    Unbiased (U-statistic, Gretton et al. 2012, eq. 3), diagonals excluded:

    .. math::
        \frac{1}{n(n-1)}\sum_{i\ne j} k(x_i,x_j) + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i,y_j)
        - \frac{2}{nm}\sum_{i,j} k(x_i,y_j)

    Biased (V-statistic, eq. 5): the same with all pairs and 1/n^2, 1/m^2.
    It is >= 0 for a positive definite kernel; the unbiased one can be
    slightly negative when the distributions are equal.

    With weights a (for x) and b (for y), normalised to sum 1, the weighted
    V-statistic  sum a_i a_j k(x_i,x_j) + sum b_i b_j k(y_i,y_j) - 2 sum a_i b_j k(x_i,y_j).
    With weights and ``estimator="unbiased"`` the self terms become
    sum_{i!=j} a_i a_j k(x_i,x_j) / (1 - sum a_i^2), which equals the U-statistic
    for uniform weights.

    Parameters
    ----------
    x : array_like, shape (n, d)
        NumPy array or CPU torch tensor, float32 or float64 (integers become float64).
    y : array_like, shape (m, d)
    kernel : str, default "gaussian"
        One of "gaussian", "laplacian", "imq", "polynomial", "linear", "energy"
        (see :mod:`simgap.kernels`).  With "energy" the biased estimate is the
        energy distance.
    bandwidth : "median", float or list of float, default "median"
        sigma of the kernel; "median" is :func:`simgap.median_bandwidth` of x
        and y pooled.  A list of sigmas (gaussian) sums the kernels.
    estimator : {"unbiased", "biased"} or None
        None means "unbiased" without weights and "biased" with weights.
    x_weights, y_weights : array_like, shape (n,) / (m,), optional
        Non-negative sample weights (normalised to sum 1).
    gamma, coef0, degree : polynomial kernel parameters (gamma defaults to 1/d).

    Returns
    -------
    float
        MMD^2.  Float32 inputs are multiplied in float32 and summed in float64.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 16))
    >>> y = rng.normal(0.5, 1.0, size=(400, 16))
    >>> simgap.mmd2(x, y) > 0.05
    True
    """
    require_cpu("mmd2", device_of(x=x, y=y, x_weights=x_weights, y_weights=y_weights))
    xa, ya = as_matrix(x, "x"), as_matrix(y, "y")
    check_same_features(xa, ya)
    a = as_weights(x_weights, xa.shape[0], "x_weights")
    b = as_weights(y_weights, ya.shape[0], "y_weights")
    est = _check_estimator(estimator, a is not None or b is not None)
    unbiased = est == "unbiased"
    if unbiased:
        for arr, name in ((xa, "x"), (ya, "y")):
            if arr.shape[0] < 2:
                raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    same = same_memory(xa, ya)
    dtype = common_dtype(xa, ya)
    xa, ya = cast(xa, dtype), cast(ya, dtype)
    if same:
        ya = xa
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa, ya])
    kxx = _self_term(xa, a, spec, unbiased, "x_weights")
    kyy = _self_term(ya, b, spec, unbiased, "y_weights")
    kxy = _cross_term(xa, ya, a, b, spec)
    return float(kxx + kyy - 2.0 * kxy)


def mmd2_batch(
    x: Any,
    ys: Sequence[Any],
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    estimator: str | None = None,
    x_weights: Any = None,
    ys_weights: Sequence[Any] | None = None,
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
) -> np.ndarray:
    """MMD^2 between x and each sample in ys, computing the x-x term once.

    Same estimators and options as :func:`mmd2`.  With ``bandwidth="median"``
    one bandwidth is used for every set: the median heuristic on x pooled with
    all of ys, so the values are comparable with each other.

    Parameters
    ----------
    x : array_like, shape (n, d)
    ys : sequence of array_like, each of shape (m_k, d)
    ys_weights : sequence of (array_like or None), optional
        One weight vector (or None) per set in ys.

    Returns
    -------
    ndarray of float64, shape (len(ys),)

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(300, 8))
    >>> sims = [rng.normal(s, 1.0, size=(200, 8)) for s in (0.0, 0.5, 1.0)]
    >>> d = simgap.mmd2_batch(real, sims)
    >>> bool(d[0] < d[1] < d[2])
    True
    """
    if isinstance(ys, (np.ndarray, str)) or not isinstance(ys, Sequence):
        if hasattr(ys, "ndim") and getattr(ys, "ndim", 0) == 3:
            ys = list(ys)
        else:
            raise TypeError("ys must be a list or tuple of 2-D arrays (one per synthetic set)")
    if len(ys) == 0:
        raise ValueError("ys is empty; give at least one set")
    if ys_weights is not None and len(ys_weights) != len(ys):
        raise ValueError(f"ys_weights has {len(ys_weights)} entries but ys has {len(ys)}")
    devs = {"x": x, "x_weights": x_weights}
    devs.update({f"ys[{k}]": v for k, v in enumerate(ys)})
    require_cpu("mmd2_batch", device_of(**devs))
    xa = as_matrix(x, "x")
    ya_list = []
    for k, y in enumerate(ys):
        ya = as_matrix(y, f"ys[{k}]")
        check_same_features(xa, ya, "x", f"ys[{k}]")
        ya_list.append(ya)
    a = as_weights(x_weights, xa.shape[0], "x_weights")
    b_list = [
        as_weights(None if ys_weights is None else ys_weights[k], ya.shape[0], f"ys_weights[{k}]")
        for k, ya in enumerate(ya_list)
    ]
    weighted = a is not None or any(b is not None for b in b_list)
    unbiased = _check_estimator(estimator, weighted) == "unbiased"
    if unbiased:
        for arr, name in [(xa, "x")] + [(ya, f"ys[{k}]") for k, ya in enumerate(ya_list)]:
            if arr.shape[0] < 2:
                raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    dtype = common_dtype(xa, *ya_list)
    xa = cast(xa, dtype)
    ya_list = [cast(ya, dtype) for ya in ya_list]
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa, *ya_list])
    kxx = _self_term(xa, a, spec, unbiased, "x_weights")
    out = np.empty(len(ya_list), dtype=np.float64)
    for k, (ya, b) in enumerate(zip(ya_list, b_list)):
        kyy = _self_term(ya, b, spec, unbiased, f"ys_weights[{k}]")
        out[k] = kxx + kyy - 2.0 * _cross_term(xa, ya, a, b, spec)
    return out
