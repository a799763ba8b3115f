"""Kernels, the median bandwidth, and the fused kernel contraction.

Every kernel is a function of the Euclidean distance or of the inner product
between two rows; sigma is the bandwidth:

===============  ====================================  =========================
name             k(x, y)                               parameters
===============  ====================================  =========================
``gaussian``     exp(-||x-y||^2 / (2 sigma^2))         sigma (a list sums kernels)
``laplacian``    exp(-||x-y|| / sigma)                 sigma
``imq``          (1 + ||x-y||^2 / sigma^2)^(-1/2)      sigma
``polynomial``   (gamma <x, y> + coef0)^degree         gamma=1/d, coef0=1, degree=3
``linear``       <x, y>                                none
``energy``       -||x-y||                              none
===============  ====================================  =========================

With the ``energy`` kernel, the MMD^2 (biased, V-statistic) equals the energy
distance of Szekely and Rizzo; the ``polynomial`` defaults are the KID kernel
of Binkowski et al. (2018).  The polynomial kernel's values are unbounded:
float32 inputs are computed in float64 when a bound on them,
(gamma max ||x||^2 + |coef0|)^degree, passes 1e35, and a bound past 1e300
raises ValueError.  float32 inputs whose largest magnitude lies outside
1e-15 .. 1e15 are computed in float64 as well (``simgap._ops.inputs.as_matrix``).

The kernel table and options are :mod:`simgap._ops.spec`'s; the sums run
through :mod:`simgap._ops.dispatch` on the inputs' device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._estimators import median_heuristic
from ._ops import dispatch
from ._ops.inputs import as_columns, as_pair, device_of, same_values
from ._ops.spec import KERNELS, KernelSpec, fit_kernel_values, resolve_kernel
from ._util.checks import as_positive_int, check_seed

__all__ = ["KERNELS", "KernelSpec", "kernel_matrix", "kernel_contract", "median_bandwidth"]


def median_bandwidth(x: Any, y: Any = None, *, max_points: int = 2000, seed: Any = 0) -> float:
    """The median heuristic bandwidth: the median Euclidean distance between
    distinct points of the pooled set.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d), optional
        Pooled with ``x`` (rows of ``x`` then rows of ``y``).
    max_points : int, default 2000
        When the pooled set has more rows, a subsample of this many rows is
        drawn without replacement with ``numpy.random.default_rng(seed)``.
    seed : int, default 0
        Seed of the subsample.

    Returns
    -------
    float
        ``median{ ||z_i - z_j|| : i < j }`` over the (sub)sampled pooled rows,
        with NumPy's median convention (mean of the two middle values).  If the
        median is 0 (many duplicates), the median of the positive distances; if
        every point is identical (or there is a single point), 1.0.  This is the sigma used by
        ``bandwidth="median"`` (Gretton et al., 2012).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> x = np.random.default_rng(0).normal(size=(500, 8))
    >>> round(simgap.median_bandwidth(x), 1)
    3.8
    """
    max_points = as_positive_int(max_points, "max_points", minimum=2)
    check_seed(seed)
    xa, ya = as_pair(x, y)
    return median_heuristic([xa] if y is None else [xa, ya], max_points, seed)


def _resolve(xa: Any, ya: Any, y_given: bool, kernel, bandwidth, gamma, coef0, degree):
    """The kernel resolved on the checked x and y (``ya is xa``: the same
    points), the pair in a dtype that holds its values, and the centre of the
    Gram products.

    Equal values are the same points, whatever the memory: y equal to x (x
    itself or a copy) is computed as x with itself (the diagonal is k(0)
    exactly).  The median bandwidth pools x with y whenever y is given, as
    :func:`simgap.mmd2` does, so it too depends on the values only;
    ``y=None`` is x alone."""
    same = ya is xa or same_values(xa, ya)
    ya = xa if same else ya
    pooled = [xa, ya] if y_given else [xa]
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, pooled, median_fn=median_heuristic)
    xa, ya = fit_kernel_values(spec, [xa, ya])
    return xa, ya, same, spec, dispatch.pooled_center([xa] if same else [xa, ya], spec)


def kernel_matrix(
    x: Any,
    y: Any = None,
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    precision: str = "highest",
) -> np.ndarray:
    """The explicit kernel matrix K[i, j] = k(x_i, y_j), for small problems.

    The other functions never build this matrix; use it to inspect kernels or
    to feed code that needs it.  Memory is n * m * itemsize.

    Parameters
    ----------
    x : array_like, shape (n, d)
        NumPy array or CPU torch tensor, float32 or float64 (integers become float64).
    y : array_like, shape (m, d), optional
        Defaults to ``x``.  When y equals x (x itself or a copy: equal values)
        the diagonal is exactly k(0).
    kernel : {"gaussian", "laplacian", "imq", "polynomial", "linear", "energy"}
        See :mod:`simgap.kernels` for the definitions.
    bandwidth : "median", float or list of float, default "median"
        sigma; "median" uses :func:`median_bandwidth` of x and y pooled (rows
        of x then rows of y, as :func:`simgap.mmd2` pools them: ``y=x`` pools
        x twice, whether or not y shares x's memory), or of x alone when y is
        None.  A list (gaussian only) sums the kernels over the bandwidths.
    gamma, coef0, degree : polynomial kernel parameters (gamma defaults to 1/d).
    precision : {"highest", "tf32", "bf16"}, default "highest"
        Precision of the inner products: see :func:`kernel_contract`.

    Returns
    -------
    ndarray, shape (n, m)
        float32 if both inputs are float32 (and within float32's range, see
        the module docstring), else float64 (a CUDA tensor for
        CUDA tensor inputs).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> x = np.array([[0.0], [1.0]])
    >>> simgap.kernel_matrix(x, kernel="gaussian", bandwidth=1.0).round(4)
    array([[1.    , 0.6065],
           [0.6065, 1.    ]])
    """
    device = device_of(x=x, y=y)
    precision = dispatch.check_precision(precision, device)
    xa, ya = as_pair(x, y, device=device)
    xa, ya, same, spec, center = _resolve(xa, ya, y is not None, kernel, bandwidth, gamma, coef0, degree)
    return dispatch.kernel_matrix(xa, ya, spec, center, same, precision)


def kernel_contract(
    x: Any,
    y: Any,
    weights: Any,
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    precision: str = "highest",
) -> np.ndarray:
    """Fused kernel contraction ``K(x, y) @ weights`` without forming K.

    out[i, c] = sum_j k(x_i, y_j) * weights[j, c].  The computation is tiled:
    each thread holds one tile of the kernel matrix at a time, so memory is
    O((n + m) * (d + q)) whatever n and m.  MMD sums, weighted MMD, batched and
    permutation statistics and the witness function are all of this form.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
        ``None`` means ``y = x``.
    weights : array_like, shape (m,) or (m, q)
        Any finite real values.
    kernel, bandwidth, gamma, coef0, degree
        As in :func:`kernel_matrix`.
    precision : {"highest", "tf32", "bf16"}, default "highest"
        How the inner products x_i . y_j are multiplied.  "highest": in the
        input precision (IEEE float32 -- never tf32 -- or float64), on every
        device.  CUDA tensors only: "tf32" / "bf16" round the centred inputs
        once to tf32 (10-bit mantissa, relative rounding 2^-11) or bf16 (7-bit,
        2^-8), take the squared norms of the rounded rows in float64, and
        multiply on tensor cores with float32 accumulation.  The squared
        distances are then those of the rounded points, so the error is the
        inputs' rounding: about 1e-4 (tf32) or 1e-3 (bf16) relative on the
        kernel values for unit-scale data; the result is compared with the
        float64 reference at 1e-3 (tf32) in the GPU tests.

    Returns
    -------
    ndarray of float64, shape (n,) or (n, q)
        Accumulated in float64 (products of float32 inputs are summed over
        tiles in float64).  CUDA tensor inputs (all on one device) give a CUDA
        tensor, computed on the caller's current stream: few features (d < 128)
        by one fused kernel whose kernel tile stays in registers, more features
        or tensor-core precisions by cuBLAS Gram tiles (4096 x 4096, a bounded
        workspace) followed by one fused kernel-and-contraction kernel.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(100, 5)), rng.normal(size=(80, 5))
    >>> w = np.full(80, 1 / 80)
    >>> witness = simgap.kernel_contract(x, y, w, bandwidth=2.0)  # mean embedding of y at x
    >>> witness.shape
    (100,)
    """
    device = device_of(x=x, y=y, weights=weights)
    precision = dispatch.check_precision(precision, device)
    xa, ya = as_pair(x, y, device=device)
    w = as_columns(weights, ya.shape[0], "weights", device=device)
    xa, ya, same, spec, center = _resolve(xa, ya, y is not None, kernel, bandwidth, gamma, coef0, degree)
    out = dispatch.kernel_contract(xa, ya, w.reshape(w.shape[0], -1), spec, center, same, False, precision)
    return out[:, 0] if w.ndim == 1 else out
