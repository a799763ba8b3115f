"""The host side of the compute primitives: thin wrappers over the compiled
CPU core (``simgap._C``, held as :data:`simgap._ops.backend.CPU`; one function
per ``cpp/src/<op>_cpu.cpp``) that allocate the outputs, and the few NumPy
steps that have no compiled kernel (random Fourier features, moments, the
median heuristic's distances).

Inputs are checked NumPy arrays (:mod:`simgap._ops.inputs`) of one dtype;
``spec`` is a :class:`~simgap._ops.spec.KernelSpec`; ``center`` the float64
row subtracted before Gram products (distance kernels) or None.  Only
:mod:`simgap._ops.dispatch` calls these.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .backend import CPU

__all__ = ["pooled_mean", "kernel_contract", "kernel_sum", "kernel_matrix", "kernel_rowwise", "mmd_blocks",
           "rff_sums", "knn", "radius_stats", "sliced_wasserstein", "mean_cov", "pair_distances", "median"]


def pooled_mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of all rows of all arrays, accumulated in float64 (no pooled copy)."""
    total = sum(a.sum(axis=0, dtype=np.float64) for a in arrays)
    count = sum(a.shape[0] for a in arrays)
    return np.ascontiguousarray(total / count, dtype=np.float64)


def kernel_contract(x, y, w, spec, center, same: bool, exclude: bool = False) -> np.ndarray:
    """out (n x q, float64) = K(x, y) @ w, w (m, q) cast to the dtype of x."""
    out = np.zeros((x.shape[0], w.shape[1]), dtype=np.float64)
    CPU.kernel_contract(x, y, np.ascontiguousarray(w, dtype=x.dtype), out, *spec.args(), center, same, exclude)
    return out


def kernel_sum(x, y, a, b, spec, center, same: bool, exclude: bool, symmetric: bool,
               per_scale: np.ndarray | None = None) -> float:
    """sum_ij a_i K(x_i, y_j) b_j in float64 (None: ones); ``per_scale`` receives
    the sum of each gaussian bandwidth alone."""
    return CPU.kernel_sum(x, y, a, b, *spec.args(), center, same, exclude, symmetric, per_scale)


def kernel_matrix(x, y, spec, center, same: bool) -> np.ndarray:
    out = np.empty((x.shape[0], y.shape[0]), dtype=x.dtype)
    CPU.kernel_matrix(x, y, out, *spec.args(), center, same)
    return out


def kernel_rowwise(a, b, spec) -> np.ndarray:
    """k(a_i, b_i) for paired rows, float64."""
    out = np.empty(a.shape[0])
    CPU.kernel_rowwise(a, b, out, *spec.args())
    return out


def mmd_blocks(x, y, ix, iy, block_size: int, spec, center) -> np.ndarray:
    """The unbiased MMD^2 of each block of rows x[ix[b B:(b+1) B]], y[iy[...]]."""
    out = np.empty(len(ix) // block_size)
    CPU.mmd_blocks(x, y, ix, iy, block_size, out, *spec.args(), center)
    return out


def rff_sums(z, w, center, omegas, want_sums=None, *, chunk_elements: int):
    """One pass over the rows of z with the random features of every bandwidth.

    Without want_sums: the weighted feature sums, per bandwidth the arrays
    (sum_i w_i cos(omega_f . z_i), sum_i w_i sin(...)) of length D (w = 1/n when None).
    With want_sums = per bandwidth ((cos_u, sin_u), (cos_v, sin_v)): an array
    (n_bandwidths, 2, n) of the row projections phi_i . u and phi_i . v.
    """
    n, d = z.shape
    D = omegas[0].shape[1]
    wz = np.full(n, 1.0 / n) if w is None else w
    step = max(1, chunk_elements // max(d, 2 * D))
    sums = [(np.zeros(D), np.zeros(D)) for _ in omegas]
    proj = None if want_sums is None else np.zeros((len(omegas), 2, n))
    c = center.astype(z.dtype)
    for s in range(0, n, step):
        e = min(n, s + step)
        zc = z[s:e] - c
        wk = wz[s:e].astype(z.dtype)
        for k, om in enumerate(omegas):
            p = zc @ om
            cos, sin = np.cos(p), np.sin(p)
            if want_sums is None:
                sums[k][0][:] += np.asarray(wk @ cos, dtype=np.float64)
                sums[k][1][:] += np.asarray(wk @ sin, dtype=np.float64)
            else:
                for t, (cu, su) in enumerate(want_sums[k]):
                    proj[k, t, s:e] = (cos @ cu.astype(z.dtype) + sin @ su.astype(z.dtype)) / D
    return sums if want_sums is None else proj


def knn(x, y, k: int, center) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of y (None: of x, each row excluded from its own)."""
    same = y is None
    dist = np.empty((x.shape[0], k))
    idx = np.empty((x.shape[0], k), dtype=np.int64)
    CPU.knn(x, x if same else y, k, center, same, same, dist, idx)
    return dist, idx


def radius_stats(queries, refs, radii, center) -> tuple[np.ndarray, np.ndarray]:
    radii = np.ascontiguousarray(radii, dtype=np.float64)
    r2 = np.ascontiguousarray(np.where(radii >= 0, radii * radii, -1.0))
    count = np.empty(queries.shape[0], dtype=np.int64)
    ratio = np.empty(queries.shape[0])
    CPU.radius_stats(queries, refs, radii, r2, center, count, ratio)
    return count, ratio


def sliced_wasserstein(x, y, theta, a, b, p: float, center) -> np.ndarray:
    out = np.empty(theta.shape[1], dtype=np.float64)
    CPU.sliced_wasserstein(x, y, theta, a, b, p, center, out)
    return out


def mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample covariance (ddof=1) in float64, in row chunks (memory O(d^2))."""
    n, d = x.shape
    mu = x.sum(axis=0, dtype=np.float64) / n
    cov = np.zeros((d, d))
    step = max(1, (1 << 22) // d)
    for s in range(0, n, step):
        c = np.asarray(x[s : s + step], dtype=np.float64) - mu
        cov += c.T @ c
    return mu, cov / (n - 1)


def pair_distances(parts: Sequence[Any]) -> np.ndarray:
    """The distances ||z_i - z_j||, i < j, of the rows of the parts pooled
    (float64, centred first; the Gram identity, clamped at 0)."""
    z = np.concatenate([np.asarray(p, dtype=np.float64) for p in parts], axis=0)
    z = z - z.mean(axis=0)
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    k = z.shape[0]
    return np.sqrt(np.maximum(np.concatenate([d2[i, i + 1 :] for i in range(k - 1)]), 0.0))


def median(values: np.ndarray) -> float:
    return float(np.median(values))
