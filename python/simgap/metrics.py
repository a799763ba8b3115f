"""Sample-quality metrics built on the fused k-nearest-neighbour kernels of the
C++ core (distances tile by tile with a running top-k; no n x m matrix):
nearest neighbours, precision / recall / density / coverage, the realism score,
and the Frechet distance.  CUDA tensors (all inputs on one device) are computed
on the GPU from cuBLAS Gram tiles (``_cuda_ops.knn`` / ``radius_stats``), with
the same definitions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _C
from ._ops.backend import device_of
from ._ops.cuda import device_pair
from ._ops.inputs import as_matrix, cast, check_same_features, common_dtype, pooled_mean
from ._util.checks import as_positive_int

__all__ = ["frechet_distance", "nearest_neighbors", "prdc", "realism_score"]


def _pair(x: Any, y: Any, xname: str, yname: str):
    """Checked x, y of one dtype: NumPy arrays, or CUDA tensors when the inputs are."""
    if device_of(**{xname: x, yname: y}) != "cpu":
        return device_pair(x, y, xname, yname)
    xa, ya = as_matrix(x, xname), as_matrix(y, yname)
    check_same_features(xa, ya, xname, yname)
    dtype = common_dtype(xa, ya)
    return cast(xa, dtype), cast(ya, dtype)


def _on_cpu(a) -> bool:
    return isinstance(a, np.ndarray)


def _mean_of(arrays):
    if _on_cpu(arrays[0]):
        return pooled_mean(arrays)
    total = sum(a.sum(dim=0, dtype=_torch_float64()) for a in arrays)
    return total / sum(a.shape[0] for a in arrays)


def _torch_float64():
    import torch

    return torch.float64


def _knn(x, y, k: int, center):
    same = y is None
    if not _on_cpu(x):
        from ._ops import cuda as _cuda_ops

        return _cuda_ops.knn(x, y, k, center, same)
    ref = x if same else y
    dist = np.empty((x.shape[0], k))
    idx = np.empty((x.shape[0], k), dtype=np.int64)
    _C.knn(x, ref, k, center, same, same, dist, idx)
    return dist, idx


def _radius_stats(queries, refs, radii, center):
    if not _on_cpu(queries):
        from ._ops import cuda as _cuda_ops

        return _cuda_ops.radius_stats(queries, refs, radii, center)
    radii = np.ascontiguousarray(radii, dtype=np.float64)
    r2 = np.ascontiguousarray(np.where(radii >= 0, radii * radii, -1.0))
    count = np.empty(queries.shape[0], dtype=np.int64)
    ratio = np.empty(queries.shape[0])
    _C.radius_stats(queries, refs, radii, r2, center, count, ratio)
    return count, ratio


def nearest_neighbors(x: Any, y: Any = None, *, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of y (Euclidean) for every row of x, without a distance matrix.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d), optional
        The reference rows.  ``None`` searches x itself, excluding each row from
        its own neighbours.
    k : int, default 1
        Neighbours per row (at most m, or n - 1 when y is None).

    Returns
    -------
    distances : ndarray of float64, shape (n, k), ascending
        The exact distances of the input values: candidates come from Gram
        tiles in the input dtype (a running top-(k + 8) per row), then their
        distances are recomputed in float64 from the rows (differences
        accumulated with fma in feature order) and re-ranked.  CPU and GPU use
        the same arithmetic, so they return the same bits.
    indices : ndarray of int64, shape (n, k)
        Row indices into y (or x); ties keep the lower index among the
        k + 8 nearest candidates of the tiled pass (with more than k + 8
        points at exactly one distance, which of them come back is not
        specified; their distances are exact).  CUDA tensors
        for CUDA inputs (candidates from cuBLAS Gram tiles).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> d, i = simgap.nearest_neighbors(x, k=1)
    >>> d[:, 0].tolist(), i[:, 0].tolist()
    ([1.0, 1.0, 2.0], [1, 0, 1])
    """
    k = as_positive_int(k, "k")
    if y is None:
        xa, _ = _pair(x, x, "x", "x")
        if k > xa.shape[0] - 1:
            raise ValueError(f"k={k} needs at least {k + 1} rows in x (each row is not its own neighbour)")
        return _knn(xa, None, k, _mean_of([xa]))
    xa, ya = _pair(x, y, "x", "y")
    if k > ya.shape[0]:
        raise ValueError(f"k={k} is larger than the {ya.shape[0]} rows of y")
    return _knn(xa, ya, k, _mean_of([xa, ya]))


def prdc(real: Any, fake: Any, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020).

    With r_i the distance from real sample i to its k-th nearest other real
    sample, and s_j the same among the fake samples:

    - precision = mean_j 1[exists i: ||f_j - r_i|| < r_i]   (fake samples on the real manifold)
    - recall    = mean_i 1[exists j: ||r_i - f_j|| < s_j]   (real samples on the fake manifold)
    - density   = 1/(k M) sum_j #{i : ||f_j - r_i|| < r_i}
    - coverage  = mean_i 1[min_j ||r_i - f_j|| < r_i]

    (strict inequalities, as in the authors' ``prdc`` package).  All distances
    come from the fused k-NN and ball-count kernels.  A pair whose Gram-tile
    distance lies within rounding of a ball's boundary is decided on its exact
    float64 distance, computed as the k-NN radii are: a sample that is exactly
    on a boundary (such as the neighbour that defines a radius, when the fake
    set contains copies of real samples) is outside, so ``prdc(x, x)`` is
    exactly 1, 1, 1, 1, in float32 too, and the GPU gives the CPU's counts.

    Parameters
    ----------
    real : array_like, shape (N, d)
    fake : array_like, shape (M, d)
    k : int, default 5
        Needs N > k and M > k.

    Returns
    -------
    dict
        ``{"precision", "recall", "density", "coverage"}`` as floats.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> r, f = rng.normal(size=(500, 8)), rng.normal(size=(500, 8))
    >>> m = simgap.prdc(r, f)
    >>> 0.6 < m["precision"] <= 1.0 and 0.6 < m["coverage"] <= 1.0
    True
    """
    k = as_positive_int(k, "k")
    ra, fa = _pair(real, fake, "real", "fake")
    for arr, name in ((ra, "real"), (fa, "fake")):
        if arr.shape[0] <= k:
            raise ValueError(f"{name} has {arr.shape[0]} rows; prdc with k={k} needs more than k")
    center = _mean_of([ra, fa])
    r_real = _knn(ra, None, k, center)[0][:, k - 1]
    r_fake = _knn(fa, None, k, center)[0][:, k - 1]
    count_fake, _ = _radius_stats(fa, ra, r_real, center)
    count_real, _ = _radius_stats(ra, fa, r_fake, center)
    nearest_fake = _knn(ra, fa, 1, center)[0][:, 0]
    n_real, n_fake = ra.shape[0], fa.shape[0]
    return {
        "precision": float((count_fake > 0).sum()) / n_fake,
        "recall": float((count_real > 0).sum()) / n_real,
        "density": float(count_fake.sum()) / (k * n_fake),
        "coverage": float((nearest_fake < r_real).sum()) / n_real,
    }


def realism_score(real: Any, fake: Any, *, k: int = 3) -> np.ndarray:
    """The realism score of each fake sample (Kynkaanniemi et al. 2019, eq. 3).

    R(f) = max_i r_i / ||f - x_i|| over the real samples x_i whose k-NN radius
    r_i is at most the median radius (the paper discards the larger half, so
    that outliers with big balls do not make everything look real).  R >= 1
    means f lies inside some real k-NN ball; larger is more realistic.

    Parameters
    ----------
    real : array_like, shape (N, d)
    fake : array_like, shape (M, d)
    k : int, default 3
        The paper's default.  Needs N > k.

    Returns
    -------
    ndarray of float64, shape (M,)
        ``inf`` for a fake sample that coincides with a kept real one, also
        one whose radius is 0 (duplicated real samples) (a CUDA tensor for
        CUDA inputs).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(400, 4))
    >>> scores = simgap.realism_score(real, np.vstack([real[:5] + 0.01, real[:5] + 10]))
    >>> bool(np.median(scores[:5]) > 1 > scores[5:].max())
    True
    """
    k = as_positive_int(k, "k")
    ra, fa = _pair(real, fake, "real", "fake")
    if ra.shape[0] <= k:
        raise ValueError(f"real has {ra.shape[0]} rows; the realism score with k={k} needs more than k")
    center = _mean_of([ra, fa])
    radii = _knn(ra, None, k, center)[0][:, k - 1]
    if _on_cpu(radii):
        kept = np.where(radii <= np.median(radii), radii, -1.0)
        return np.sqrt(_radius_stats(fa, ra, kept, center)[1])
    from ._ops import cuda as _cuda_ops

    kept = radii.where(radii <= _cuda_ops.median(radii), -1.0)  # numpy's median, on the device
    return _radius_stats(fa, ra, kept, center)[1].sqrt()


def _mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample covariance (ddof=1) in float64, in row chunks (memory O(d^2))."""
    n, d = x.shape
    mu = x.sum(axis=0, dtype=np.float64) / n
    cov = np.zeros((d, d))
    step = max(1, (1 << 22) // d)
    for s in range(0, n, step):
        c = np.asarray(x[s : s + step], dtype=np.float64) - mu
        cov += c.T @ c
    return mu, cov / (n - 1)


def frechet_distance(x: Any, y: Any) -> float:
    r"""Frechet distance between Gaussians fitted to x and y (the FID formula).

    .. math::
        \|\mu_x - \mu_y\|^2 + \mathrm{Tr}(\Sigma_x) + \mathrm{Tr}(\Sigma_y)
        - 2\,\mathrm{Tr}\big((\Sigma_x \Sigma_y)^{1/2}\big)

    with sample covariances (ddof = 1), as in pytorch-fid.  The trace of the
    matrix square root is computed stably as the sum of the square roots of the
    eigenvalues of the symmetric matrix Sigma_x^{1/2} Sigma_y Sigma_x^{1/2}
    (``numpy.linalg.eigh``; tiny negative eigenvalues from rounding are clipped
    at 0), instead of ``scipy.linalg.sqrtm`` of a non-symmetric product.

    Parameters
    ----------
    x : array_like, shape (n, d), n >= 2
    y : array_like, shape (m, d), m >= 2

    Returns
    -------
    float
        For CUDA tensors the means and covariances are computed on the GPU
        (float64) and the two d x d eigendecompositions on the host.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(5000, 4))
    >>> round(simgap.frechet_distance(x, x + 1.0), 2)
    4.0
    """
    xa, ya = _pair(x, y, "x", "y")
    for arr, name in ((xa, "x"), (ya, "y")):
        if arr.shape[0] < 2:
            raise ValueError(f"{name} has {arr.shape[0]} row; the Frechet distance needs at least 2")
    if not _on_cpu(xa):
        from ._ops import cuda as _cuda_ops

        # Moments on the device (O(d^2) memory); the d x d eigenproblems below on the host.
        (mx, cx), (my, cy) = (tuple(t.cpu().numpy() for t in _cuda_ops.mean_cov(a)) for a in (xa, ya))
    else:
        mx, cx = _mean_cov(xa)
        my, cy = _mean_cov(ya)
    # The trace term in units of a power of two near the covariances' scale (an
    # exact rescaling): Sigma_x^1/2 Sigma_y Sigma_x^1/2 is of the fourth power of
    # the data's scale and would overflow or underflow float64 far sooner than
    # the covariances themselves.
    top = max(float(np.abs(np.diag(cx)).max()), float(np.abs(np.diag(cy)).max()))
    unit = 2.0 ** math.frexp(top)[1] if top > 0 else 1.0
    cxs, cys = cx / unit, cy / unit
    w, v = np.linalg.eigh(cxs)
    root = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    inner = root @ cys @ root
    ev = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(ev, 0.0, None)).sum()) * unit
    diff = mx - my
    # >= 0 exactly; rounding of nearly equal (or rank-deficient) covariances can go below
    return max(float(diff @ diff + np.trace(cx) + np.trace(cy) - 2.0 * tr_sqrt), 0.0)
