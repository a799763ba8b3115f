"""Plain float64 NumPy references for every simgap operation.

These are written to be read, not to be fast: every input is cast to float64 first, distances come
from :func:`scipy.spatial.distance.cdist` (direct differences, no ``||x||^2 + ||y||^2 - 2<x, y>``
cancellation), and each formula is spelled out as in ``API_SPEC``.  Tests and benchmarks compare the
library against these functions.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist

KERNELS = ("gaussian", "laplacian", "imq", "polynomial", "linear", "energy")
BANDWIDTH_KERNELS = ("gaussian", "laplacian", "imq")


def as_f64(a) -> np.ndarray:
    """Any array-like (NumPy, torch CPU tensor, int/bool) as a float64 NumPy array."""
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------------------- kernels
def sq_distances(x, y) -> np.ndarray:
    """(n, m) squared Euclidean distances, computed from differences."""
    return cdist(as_f64(x), as_f64(y), metric="sqeuclidean")


def _sigmas(bandwidth) -> np.ndarray:
    return np.atleast_1d(np.asarray(bandwidth, dtype=np.float64))


def kernel_matrix(x, y=None, *, kernel="gaussian", bandwidth=None, gamma=None, coef0=1.0, degree=3):
    """K(x, y) in float64. ``bandwidth=None`` means ``median_bandwidth(x, y)`` for kernels that use one."""
    x = as_f64(x)
    y = x if y is None else as_f64(y)
    if kernel in BANDWIDTH_KERNELS and (bandwidth is None or isinstance(bandwidth, str)):
        bandwidth = median_bandwidth(x, None if y is x else y)

    if kernel == "gaussian":
        d2 = sq_distances(x, y)
        return sum(np.exp(-d2 / (2.0 * s * s)) for s in _sigmas(bandwidth))
    if kernel == "laplacian":
        (sigma,) = _sigmas(bandwidth)
        return np.exp(-np.sqrt(sq_distances(x, y)) / sigma)
    if kernel == "imq":
        (sigma,) = _sigmas(bandwidth)
        return (1.0 + sq_distances(x, y) / sigma**2) ** -0.5
    if kernel == "polynomial":
        if gamma is None:
            gamma = 1.0 / x.shape[1]
        return (gamma * (x @ y.T) + coef0) ** degree
    if kernel == "linear":
        return x @ y.T
    if kernel == "energy":
        return -np.sqrt(sq_distances(x, y))
    raise ValueError(f"unknown kernel {kernel!r}")


def kernel_contract(x, y, weights, **kernel_kwargs) -> np.ndarray:
    """K(x, y) @ weights, weights of shape (m,) or (m, q)."""
    return kernel_matrix(x, y, **kernel_kwargs) @ as_f64(weights)


# ------------------------------------------------------------------------------------- bandwidth
def median_bandwidth(x, y=None, *, max_points=2000, seed=0) -> float:
    """Median pairwise Euclidean distance of the pooled rows (x stacked on y), seeded subsample."""
    pooled = as_f64(x) if y is None else np.vstack([as_f64(x), as_f64(y)])
    n_rows = pooled.shape[0]
    if n_rows > max_points:
        rows = np.random.default_rng(seed).choice(n_rows, size=max_points, replace=False)
        pooled = pooled[rows]
    distances = pdist(pooled)  # pairs i < j
    if distances.size and np.median(distances) > 0:
        return float(np.median(distances))
    positive = distances[distances > 0]
    if positive.size:
        return float(np.median(positive))
    return 1.0


# ------------------------------------------------------------------------------------------- MMD
def _normalised(weights, n) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = as_f64(weights)
    return w / w.sum()


def mmd2(x, y, *, kernel="gaussian", bandwidth=None, estimator=None, x_weights=None, y_weights=None,
         **kernel_kwargs) -> float:
    """MMD^2 exactly as in the spec (unbiased, biased, weighted biased, weighted unbiased)."""
    x, y = as_f64(x), as_f64(y)
    n, m = len(x), len(y)
    if kernel in BANDWIDTH_KERNELS and (bandwidth is None or isinstance(bandwidth, str)):
        bandwidth = median_bandwidth(x, y)
    kw = dict(kernel=kernel, bandwidth=bandwidth, **kernel_kwargs)
    kxx, kyy, kxy = kernel_matrix(x, x, **kw), kernel_matrix(y, y, **kw), kernel_matrix(x, y, **kw)

    weighted = x_weights is not None or y_weights is not None
    if estimator is None:
        estimator = "biased" if weighted else "unbiased"

    if not weighted:
        if estimator == "unbiased":
            off_x = kxx.sum() - np.trace(kxx)
            off_y = kyy.sum() - np.trace(kyy)
            return float(off_x / (n * (n - 1)) + off_y / (m * (m - 1)) - 2.0 * kxy.sum() / (n * m))
        return float(kxx.sum() / n**2 + kyy.sum() / m**2 - 2.0 * kxy.sum() / (n * m))

    a, b = _normalised(x_weights, n), _normalised(y_weights, m)
    cross = a @ kxy @ b
    if estimator == "biased":
        return float(a @ kxx @ a + b @ kyy @ b - 2.0 * cross)
    # weighted unbiased: drop the diagonal, renormalise by 1 - sum a_i^2
    off_x = a @ kxx @ a - np.sum(a * a * np.diag(kxx))
    off_y = b @ kyy @ b - np.sum(b * b * np.diag(kyy))
    return float(off_x / (1.0 - np.sum(a * a)) + off_y / (1.0 - np.sum(b * b)) - 2.0 * cross)


# ---------------------------------------------------------------------------- sliced Wasserstein
def random_projections(d, n_projections, seed) -> np.ndarray:
    """(d, L) directions: RandomState(seed).randn(d, L), each column scaled to unit norm."""
    theta = np.random.RandomState(seed).randn(d, n_projections)
    return theta / np.sqrt(np.sum(theta**2, axis=0, keepdims=True))


def wasserstein_1d_pp(u, v, u_weights=None, v_weights=None, p=2.0) -> float:
    """W_p^p between two weighted empirical measures on the line, via their quantile functions.

    F_u^{-1}(t) and F_v^{-1}(t) are step functions of t in (0, 1]; they only change at the cumulative
    weights of u and of v.  Merge the two grids, and on each piece (t_k-1, t_k] add
    (t_k - t_k-1) * |F_u^{-1}(t) - F_v^{-1}(t)|^p, reading both quantiles at the piece's midpoint.
    """
    u, v = as_f64(u), as_f64(v)
    a, b = _normalised(u_weights, len(u)), _normalised(v_weights, len(v))
    iu, iv = np.argsort(u, kind="stable"), np.argsort(v, kind="stable")
    u, a, v, b = u[iu], a[iu], v[iv], b[iv]
    cu, cv = np.cumsum(a), np.cumsum(b)
    cu[-1] = cv[-1] = 1.0
    grid = np.unique(np.concatenate([[0.0], cu, cv]))
    widths = np.diff(grid)
    t = 0.5 * (grid[:-1] + grid[1:])  # midpoint of each piece
    qu = u[np.minimum(np.searchsorted(cu, t), len(u) - 1)]  # first i with cu[i] >= t
    qv = v[np.minimum(np.searchsorted(cv, t), len(v) - 1)]
    return float(np.sum(widths * np.abs(qu - qv) ** p))


def sliced_wasserstein(x, y, *, n_projections=256, p=2, seed=0, projections=None, x_weights=None,
                       y_weights=None, return_per_projection=False):
    """SW_p = (mean_l W_p^p(theta_l^T x, theta_l^T y))^(1/p)."""
    x, y = as_f64(x), as_f64(y)
    if projections is None:
        projections = random_projections(x.shape[1], n_projections, seed)
    projections = as_f64(projections)
    px, py = x @ projections, y @ projections
    per = np.array([wasserstein_1d_pp(px[:, l], py[:, l], x_weights, y_weights, p)
                    for l in range(projections.shape[1])])
    value = float(np.mean(per) ** (1.0 / p))
    return (value, per) if return_per_projection else value
