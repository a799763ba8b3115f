"""Sliced Wasserstein distance: projections and sorting in the compiled core
(on the inputs' device, through :mod:`simgap._ops.dispatch`)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._ops import dispatch
from ._ops.inputs import as_pair, as_projections, as_weights, check_memory, device_of, max_sq_norm
from ._util.checks import as_positive_int, as_real, check_flag, check_seed

__all__ = ["MAX_P", "sliced_wasserstein", "random_projections"]

# The largest order p: past it, |Delta|^p spans more than float64's range for
# any change of scale of the data finer than 2^(2000 / p), and W_p is within
# 0.002 % of the largest |Delta| anyway.
MAX_P = 1e6
# The mean of the per-direction W_p^p is used as computed when it is finite
# and at least this (far from float64's subnormal range, where |Delta|^p has
# lost digits); otherwise the data are rescaled (see _rescaled_mean).
_TRUSTED_MEAN = 2.0**-900


def random_projections(d: int, n_projections: int, seed: Any = 0) -> np.ndarray:
    """Random unit directions, shape (d, n_projections), float64.

    ``numpy.random.RandomState(seed).randn(d, n_projections)`` with each column
    scaled to unit norm: the convention of POT's
    ``ot.sliced.get_random_projections`` for an integer seed, so that the same
    seed gives the same directions in both libraries.  ``seed`` may also be a
    ``numpy.random.RandomState``; None draws fresh directions.
    """
    d = as_positive_int(d, "d")
    n_projections = as_positive_int(n_projections, "n_projections")
    check_memory(16.0 * d * n_projections + 8.0 * n_projections, "n_projections", n_projections,
                 f"the {d} x {n_projections} float64 directions")
    if isinstance(seed, np.random.RandomState):
        rng = seed
    elif seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        rng = np.random.RandomState(seed)
    else:
        raise TypeError(f"seed must be an int, None or a numpy RandomState; got {type(seed).__name__}")
    theta = rng.randn(d, n_projections)
    theta /= np.sqrt(np.sum(theta**2, axis=0, keepdims=True))
    return theta


def sliced_wasserstein(
    x: Any,
    y: Any,
    *,
    n_projections: int = 256,
    p: float = 2,
    seed: Any = 0,
    projections: Any = None,
    x_weights: Any = None,
    y_weights: Any = None,
    return_per_projection: bool = False,
) -> float | tuple[float, np.ndarray]:
    r"""Sliced p-Wasserstein distance between the samples x and y.

    .. math::
        SW_p(x, y) = \Big(\frac{1}{L}\sum_{l=1}^{L} W_p^p(\theta_l^\top x, \theta_l^\top y)\Big)^{1/p}

    Each 1-D distance is exact: both projected samples are sorted and W_p^p is
    the integral over t in [0, 1] of |F^{-1}(t) - G^{-1}(t)|^p, read off the
    two (weighted) quantile functions, so n != m and weights are handled.  This
    is the definition of POT's ``ot.sliced_wasserstein_distance`` (Bonneel et
    al. 2015); with the same seed both give the same value.

    Parameters
    ----------
    x : array_like, shape (n, d)
        NumPy array or CPU torch tensor, float32 or float64.
    y : array_like, shape (m, d)
    n_projections : int, default 256
        Number L of random directions (ignored when ``projections`` is given).
    p : float, default 2
        Order, 1 <= p <= ``MAX_P`` (1e6).  Where |Delta|^p passes float64's
        range (large p, or data at a scale near its limits) the distance is
        computed on rescaled data, so that it stays finite and exact to rounding.
    seed : int, numpy.random.RandomState or None, default 0
        Seed of the directions: see :func:`random_projections`.
    projections : array_like, shape (d, L), optional
        Explicit directions (columns), used as given.
    x_weights, y_weights : array_like, shape (n,) / (m,), optional
        Non-negative sample weights, normalised to sum 1.
    return_per_projection : bool, default False
        Also return the L values W_p^p(theta_l^T x, theta_l^T y).

    Returns
    -------
    float, or (float, ndarray of shape (L,))
        Projections are computed in the input precision, the 1-D distances and
        their mean in float64.  CUDA tensors (x, y, and the weights and
        projections if given, on one device) are computed on the GPU: one
        cuBLAS GEMM (IEEE fp32 or fp64) per chunk of directions, a CUB radix
        sort of each direction's values, the exact 1-D distances in one more
        kernel; the per-projection values are then a float64 CUDA tensor.
        Chunks hold at most 1 GiB of projected values and their sorted copy.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1000, 3))
    >>> round(simgap.sliced_wasserstein(x, x + 1.0, n_projections=500), 1)
    1.0
    """
    return_per_projection = check_flag(return_per_projection, "return_per_projection")
    if projections is None:
        check_seed(seed)
    device = device_of(x=x, y=y, projections=projections, x_weights=x_weights, y_weights=y_weights)
    xa, ya = as_pair(x, y, device=device)
    p = as_real(p, "p")
    if p < 1 or p > MAX_P:
        raise ValueError(f"p must be >= 1 and <= {MAX_P:g} (simgap.sliced.MAX_P), got {p}")
    if projections is None:
        theta = random_projections(xa.shape[1], n_projections, seed)
    else:
        theta = as_projections(projections, xa.shape[1])
    a = as_weights(x_weights, xa.shape[0], "x_weights", on=xa)
    b = as_weights(y_weights, ya.shape[0], "y_weights", on=ya)
    out = dispatch.sliced_wasserstein(xa, ya, theta, a, b, p, dispatch.pooled_center([xa, ya]))
    mean = float(out.mean())
    if math.isfinite(mean) and mean >= _TRUSTED_MEAN:
        value = mean ** (1.0 / p)
    else:  # |Delta|^p overflowed, or underflowed, somewhere
        value, out = _rescaled(xa, ya, theta, a, b, p, mean, out)
    return (value, out) if return_per_projection else value


def _rescaled(xa, ya, theta, a, b, p: float, mean: float, out) -> tuple[float, Any]:
    """SW_p and the per-direction W_p^p when |Delta|^p leaves float64's range:
    computed on x / s and y / s, SW_p(x, y) = s SW_p(x / s, y / s), with the
    scale s found by bisection on log2 s so that the largest W_p^p(x / s, y / s)
    lies in [2^-900, 2^1024).  It lies between the largest W_1 (then the largest
    W_p^p / s^p >= 1, as W_p >= W_1) and a bound on every |Delta|:
    max_l ||theta_l|| (||x_i|| + ||y_j||), with a margin for rounding (then it
    is <= 1).  Each step is one more pass over the data; with p <= MAX_P at
    most about 20.  The per-direction values W_p^p are returned at the data's
    scale, inf where they pass float64's range (the distance itself is finite)."""
    w1 = dispatch.sliced_wasserstein(xa, ya, theta, a, b, 1.0, dispatch.pooled_center([xa, ya]))
    lo = float(w1.max())
    if not (lo > 0 and math.isfinite(lo)):  # no transport at all (all W_1 = 0): the value stands
        return (max(mean, 0.0) ** (1.0 / p) if math.isfinite(mean) else math.inf), out
    radius = math.sqrt(max(max_sq_norm(xa), max_sq_norm(ya)))
    theta_norm = float(np.sqrt((np.asarray(theta, dtype=np.float64) ** 2).sum(axis=0)).max())
    k_lo = math.log2(lo)
    k_hi = max(k_lo, math.log2(theta_norm) + math.log2(radius) + 3.0) if radius > 0 else k_lo
    # x / s stays within the dtype's range (float32 projections overflow past 2^128).
    k_min = math.log2(radius) - (100.0 if str(xa.dtype).endswith("float32") else 1000.0)
    k_lo, k_hi = max(k_lo, k_min), max(k_hi, k_min)
    k = k_lo
    for _ in range(64):
        k = min(max(k, -1070.0), 1020.0)
        s = 2.0**k
        xs, ys = xa / s, ya / s
        o = dispatch.sliced_wasserstein(xs, ys, theta, a, b, p, dispatch.pooled_center([xs, ys]))
        top = float(o.max())
        if math.isfinite(top) and top >= _TRUSTED_MEAN:
            break
        if math.isfinite(top):
            k_hi = k
        else:
            k_lo = k
        k = 0.5 * (k_lo + k_hi)
        if k_hi - k_lo < 1e-12 * max(1.0, abs(k)):
            break
    value = s * float(o.mean()) ** (1.0 / p)
    with np.errstate(over="ignore"):
        per = (o ** (1.0 / p) * s) ** p
    return value, per
