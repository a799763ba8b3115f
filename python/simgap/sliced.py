"""Sliced Wasserstein distance, with projection and sorting in C++."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from . import _C
from ._util.arrays import is_tensor as _is_torch_tensor
from ._ops.backend import device_of
from ._util.checks import as_positive_int, as_real, check_flag, check_seed
from ._ops.inputs import as_weights, as_matrix, cast, check_finite, check_same_features, common_dtype, pooled_mean

__all__ = ["sliced_wasserstein", "random_projections"]


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
        Order, p >= 1.
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
    if device != "cpu":
        from ._ops import cuda as _cuda_ops

        xa, ya, _ = _cuda_ops.cuda_pair(x, y)
    else:
        xa, ya = as_matrix(x, "x"), as_matrix(y, "y")
        check_same_features(xa, ya)
    p = as_real(p, "p")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p}")
    d = xa.shape[1]
    if projections is None:
        theta = random_projections(d, n_projections, seed)
    else:
        if _is_torch_tensor(projections):
            projections = projections.detach().cpu().numpy()
        theta = np.asarray(projections)
        if theta.dtype.kind not in "biuf":
            raise TypeError(f"projections must be real numbers, got dtype {theta.dtype}")
        if theta.ndim != 2 or theta.shape[0] != d or theta.shape[1] == 0:
            raise ValueError(
                f"projections must have shape (d, L) = ({d}, L >= 1) to match x; got {theta.shape}"
            )
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        check_finite(theta, "projections")
    if device != "cpu":
        a = _cuda_ops._weights(x_weights, xa.shape[0], "x_weights", xa.device)
        b = _cuda_ops._weights(y_weights, ya.shape[0], "y_weights", xa.device)
        out = _cuda_ops.sliced_wasserstein(xa, ya, theta, a, b, p)
        value = float(out.mean()) ** (1.0 / p)
        return (value, out) if return_per_projection else value
    a = as_weights(x_weights, xa.shape[0], "x_weights")
    b = as_weights(y_weights, ya.shape[0], "y_weights")
    dtype = common_dtype(xa, ya)
    xa, ya = cast(xa, dtype), cast(ya, dtype)
    out = np.empty(theta.shape[1], dtype=np.float64)
    _C.sliced_wasserstein(xa, ya, theta, a, b, p, pooled_mean([xa, ya]), out)
    value = float(np.mean(out) ** (1.0 / p))
    if return_per_projection:
        return value, out
    return value
