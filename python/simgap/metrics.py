"""Sample-quality metrics built on the fused k-nearest-neighbour kernels
(distances tile by tile with a running top-k; no n x m matrix): nearest
neighbours, precision / recall / density / coverage, the realism score, and
the Frechet distance.  CUDA tensors (all inputs on one device) are computed on
the GPU from cuBLAS Gram tiles, with the same definitions: the k-NN, ball
statistics and moments go through :mod:`simgap._ops.dispatch`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._ops import dispatch
from ._ops.inputs import as_matrix, as_pair
from ._util.arrays import like, to_host
from ._util.checks import as_positive_int

__all__ = ["frechet_distance", "nearest_neighbors", "prdc", "realism_score"]


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
        xa = as_matrix(x, "x")
        if k > xa.shape[0] - 1:
            raise ValueError(f"k={k} needs at least {k + 1} rows in x (each row is not its own neighbour)")
        return dispatch.knn(xa, None, k, dispatch.pooled_center([xa]))
    xa, ya = as_pair(x, y, "x", "y")
    if k > ya.shape[0]:
        raise ValueError(f"k={k} is larger than the {ya.shape[0]} rows of y")
    return dispatch.knn(xa, ya, k, dispatch.pooled_center([xa, ya]))


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
    ra, fa = as_pair(real, fake, "real", "fake")
    for arr, name in ((ra, "real"), (fa, "fake")):
        if arr.shape[0] <= k:
            raise ValueError(f"{name} has {arr.shape[0]} rows; prdc with k={k} needs more than k")
    center = dispatch.pooled_center([ra, fa])
    r_real = dispatch.knn(ra, None, k, center)[0][:, k - 1]
    r_fake = dispatch.knn(fa, None, k, center)[0][:, k - 1]
    count_fake, _ = dispatch.radius_stats(fa, ra, r_real, center)
    count_real, _ = dispatch.radius_stats(ra, fa, r_fake, center)
    nearest_fake = dispatch.knn(ra, fa, 1, center)[0][:, 0]
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
    ra, fa = as_pair(real, fake, "real", "fake")
    if ra.shape[0] <= k:
        raise ValueError(f"real has {ra.shape[0]} rows; the realism score with k={k} needs more than k")
    center = dispatch.pooled_center([ra, fa])
    radii = to_host(dispatch.knn(ra, None, k, center)[0][:, k - 1])
    kept = np.where(radii <= np.median(radii), radii, -1.0)  # the balls of at most the median radius
    return dispatch.radius_stats(fa, ra, like(kept, ra), center)[1] ** 0.5


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
    xa, ya = as_pair(x, y, "x", "y")
    for arr, name in ((xa, "x"), (ya, "y")):
        if arr.shape[0] < 2:
            raise ValueError(f"{name} has {arr.shape[0]} row; the Frechet distance needs at least 2")
    # Moments where the rows are (O(d^2) memory); the d x d eigenproblems below on the host.
    mx, cx = dispatch.mean_cov(xa)
    my, cy = dispatch.mean_cov(ya)
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
