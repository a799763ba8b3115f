"""Maximum mean discrepancy (MMD^2) between two samples, computed with the
fused kernel sums of the C++ core (the n x m kernel matrix is never formed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from . import _C
from ._ops.backend import check_precision, device_of
from ._ops.inputs import as_matrix, as_weights, cast, check_same_features, common_dtype, same_memory
from ._util.checks import as_positive_int, check_flag, check_seed
from .kernels import KernelSpec, fit_kernel_values, resolve_kernel

__all__ = ["MMDTestResult", "mmd2", "mmd2_batch", "mmd_test"]

_ESTIMATORS = ("unbiased", "exact", "biased", "block", "linear", "rff")
_ROW_CHUNK_ELEMENTS = 1 << 22  # rows gathered per step by the linear and rff estimators


def _check_estimator(estimator: Any, weighted: bool, allowed: Sequence[str] = _ESTIMATORS) -> str:
    if estimator is None:
        return "biased" if weighted else "unbiased"
    if not isinstance(estimator, str) or estimator.lower() not in allowed:
        raise ValueError(f"estimator must be one of {tuple(allowed)} (or None); got {estimator!r}")
    est = estimator.lower()
    return "unbiased" if est == "exact" else est


def _pair_center(x: np.ndarray, y: np.ndarray, spec: KernelSpec) -> np.ndarray | None:
    if not spec.uses_distance:
        return None
    return (x.sum(axis=0, dtype=np.float64) + y.sum(axis=0, dtype=np.float64)) / (x.shape[0] + y.shape[0])


def _self_term(z: np.ndarray, w: np.ndarray | None, spec: KernelSpec, unbiased: bool, name: str,
               per_scale: np.ndarray | None = None) -> float:
    """E k(z, z') over distinct pairs (unbiased) or all pairs (biased)."""
    n = z.shape[0]
    center = z.sum(axis=0, dtype=np.float64) / n if spec.uses_distance else None
    s = _C.kernel_sum(z, z, w, w, *spec.args(), center, True, unbiased, True, per_scale)
    if w is None:
        div = n * (n - 1) if unbiased else n * n
    elif not unbiased:
        div = 1.0
    else:
        div = 1.0 - float(np.dot(w, w))
        if div <= 1e-12:
            raise ValueError(f"{name}: the unbiased estimator needs positive weight on at least two samples")
    if per_scale is not None:
        per_scale /= div
    return s / div


def _cross_term(x: np.ndarray, y: np.ndarray, a: np.ndarray | None, b: np.ndarray | None,
                spec: KernelSpec, per_scale: np.ndarray | None = None) -> float:
    """E k(x, y) over all pairs."""
    same = same_memory(x, y)
    sym = same and a is b
    s = _C.kernel_sum(x, y, a, a if sym else b, *spec.args(), _pair_center(x, y, spec), same,
                      False, sym, per_scale)
    div = (x.shape[0] if a is None else 1.0) * (y.shape[0] if b is None else 1.0)
    if per_scale is not None:
        per_scale /= div
    return s / div


def _exact(x, y, a, b, spec, unbiased, per_bandwidth):
    """Exact U- or V-statistic from fused kernel sums (symmetric blocks halved)."""
    if not per_bandwidth:
        return _self_term(x, a, spec, unbiased, "x_weights") + _self_term(
            y, b, spec, unbiased, "y_weights") - 2.0 * _cross_term(x, y, a, b, spec)
    ns = len(spec.bandwidths)
    pxx, pyy, pxy = np.zeros(ns), np.zeros(ns), np.zeros(ns)
    _self_term(x, a, spec, unbiased, "x_weights", pxx)
    _self_term(y, b, spec, unbiased, "y_weights", pyy)
    _cross_term(x, y, a, b, spec, pxy)
    return pxx + pyy - 2.0 * pxy


def _uniform(w: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, 1.0 / n) if w is None else w


def _weighted_var_of_mean(values, w) -> float:
    """Variance of sum_i w_i values_i for independent draws (sum w = 1).

    values and w are 1-D NumPy arrays or tensors (the CUDA path passes tensors)."""
    w2 = float(w @ w)
    if w2 >= 1.0 - 1e-12:
        return 0.0
    centred = values - float(w @ values)
    return float((w * w) @ (centred * centred)) / (1.0 - w2)


def _exact_with_stderr(x, y, a, b, spec, unbiased):
    """Exact estimate and its first-order standard error from kernel row sums.

    With f_i = E_x' k(x_i, x') - E_y k(x_i, y) and g_j = E_y' k(y_j, y') - E_x k(x, y_j)
    (leave-one-out for the unbiased estimator), Var(MMD^2) ~ 4 Var(f)/n + 4 Var(g)/m
    (the H-decomposition of the two-sample U-statistic, Serfling 1980, 5.3).
    """
    n, m = x.shape[0], y.shape[0]
    ua, ub = _uniform(a, n), _uniform(b, m)
    center = _pair_center(x, y, spec)
    dt = x.dtype

    def contract(p, q, w, same, exclude):
        out = np.zeros((p.shape[0], 1))
        _C.kernel_contract(p, q, np.ascontiguousarray(w.reshape(-1, 1), dtype=dt), out,
                           *spec.args(), center, same, exclude)
        return out[:, 0]

    rxx = contract(x, x, ua, True, unbiased)
    ryy = contract(y, y, ub, True, unbiased)
    rxy = contract(x, y, ub, False, False)
    ryx = contract(y, x, ua, False, False)
    na = 1.0 - float(np.dot(ua, ua)) if unbiased else 1.0
    nb = 1.0 - float(np.dot(ub, ub)) if unbiased else 1.0
    if na <= 1e-12 or nb <= 1e-12:
        raise ValueError("x_weights / y_weights: the unbiased estimator needs weight on at least two samples")
    f = rxx / na - rxy
    g = ryy / nb - ryx
    value = float(np.dot(ua, rxx) / na + np.dot(ub, ryy) / nb - 2.0 * np.dot(ua, rxy))
    var = 4.0 * (_weighted_var_of_mean(f, ua) + _weighted_var_of_mean(g, ub))
    return value, float(np.sqrt(max(var, 0.0)))


def _block(x, y, spec, block_size, seed):
    n, m = x.shape[0], y.shape[0]
    nb = min(n, m) // block_size
    rng = np.random.default_rng(seed)
    ix = rng.permutation(n)[: nb * block_size].astype(np.int64)
    iy = rng.permutation(m)[: nb * block_size].astype(np.int64)
    out = np.empty(nb)
    _C.mmd_blocks(x, y, ix, iy, block_size, out, *spec.args(), _pair_center(x, y, spec))
    se = float(out.std(ddof=1) / np.sqrt(nb)) if nb > 1 else float("nan")
    return float(out.mean()), se


def _linear(x, y, spec, seed):
    n, m = x.shape[0], y.shape[0]
    npairs = min(n, m) // 2
    rng = np.random.default_rng(seed)
    ix = rng.permutation(n)[: 2 * npairs]
    iy = rng.permutation(m)[: 2 * npairs]
    h = np.empty(npairs)
    step = max(1, _ROW_CHUNK_ELEMENTS // (4 * x.shape[1]))
    args = spec.args()
    for s in range(0, npairs, step):
        e = min(npairs, s + step)
        x1, x2 = x[ix[2 * s : 2 * e : 2]], x[ix[2 * s + 1 : 2 * e : 2]]
        y1, y2 = y[iy[2 * s : 2 * e : 2]], y[iy[2 * s + 1 : 2 * e : 2]]
        k = np.empty((4, e - s))
        _C.kernel_rowwise(x1, x2, k[0], *args)
        _C.kernel_rowwise(y1, y2, k[1], *args)
        _C.kernel_rowwise(x1, y2, k[2], *args)
        _C.kernel_rowwise(x2, y1, k[3], *args)
        h[s:e] = k[0] + k[1] - k[2] - k[3]
    se = float(h.std(ddof=1) / np.sqrt(npairs)) if npairs > 1 else float("nan")
    return float(h.mean()), se


def _rff_frequencies(spec: KernelSpec, d: int, n_features: int, seed, dtype) -> list[np.ndarray]:
    """One (d, D) frequency matrix per bandwidth, drawn from the kernel's spectral density."""
    rng = np.random.default_rng(seed)
    out = []
    for sigma in spec.bandwidths:
        g = rng.standard_normal((d, n_features))
        if spec.name == "gaussian":  # exp(-|t|^2 / (2 s^2)) <-> N(0, I / s^2)
            omega = g / sigma
        else:  # exp(-|t| / s) <-> multivariate Cauchy (Student t, 1 dof) with scale 1/s
            omega = g / (sigma * np.abs(rng.standard_normal(n_features)))
        out.append(np.ascontiguousarray(omega, dtype=dtype))
    return out


def _rff_pass(z, w, center, omegas, want_sums=None):
    """One pass over the rows of z with the features of every bandwidth.

    Without want_sums: the weighted feature sums, per bandwidth the arrays
    (sum_i w_i cos(omega_f . z_i), sum_i w_i sin(...)) of length D (w = 1/n when None).
    With want_sums = per bandwidth ((cos_u, sin_u), (cos_v, sin_v)): an array
    (n_bandwidths, 2, n) of the row projections phi_i . u and phi_i . v.
    """
    n, d = z.shape
    D = omegas[0].shape[1]
    wz = _uniform(w, n)
    step = max(1, _ROW_CHUNK_ELEMENTS // max(d, 2 * D))
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


def _rff(x, y, a, b, spec, n_features, seed, return_stderr, per_bandwidth, center=None, rff_pass=None):
    """Random-Fourier-feature estimate (unbiased form) and its standard error.

    MMD^2 is estimated per frequency; the mean over the D frequencies of a
    bandwidth is unbiased for that bandwidth's MMD^2 (the features' inner
    product is unbiased for the kernel).  The standard error adds the spread over
    frequencies to the sampling error (H-decomposition, second pass over the data).
    ``rff_pass`` (default :func:`_rff_pass`) makes the passes over the rows; the
    CUDA path gives its own, with x and y CUDA tensors and the centre given.
    """
    rff_pass = rff_pass or _rff_pass
    n, m = x.shape[0], y.shape[0]
    ua, ub = _uniform(a, n), _uniform(b, m)
    sa, sb = float(np.dot(ua, ua)), float(np.dot(ub, ub))
    if sa >= 1 - 1e-12 or sb >= 1 - 1e-12:
        raise ValueError("x_weights / y_weights: the rff estimator needs weight on at least two samples")
    ca, cb = sa / (1.0 - sa), sb / (1.0 - sb)
    if center is None:
        center = _pair_center(x, y, spec)  # rff kernels are distance kernels: never None
    dtype = np.float64 if str(x.dtype).endswith("float64") else np.float32
    omegas = _rff_frequencies(spec, x.shape[1], n_features, seed, dtype)
    sx, sy = rff_pass(x, a, center, omegas), rff_pass(y, b, center, omegas)
    per_scale, feat_var = [], []
    for (cx, snx), (cy, sny) in zip(sx, sy):
        uu = cx * cx + snx * snx
        vv = cy * cy + sny * sny
        diff = (cx - cy) ** 2 + (snx - sny) ** 2
        est_f = diff + (uu - 1.0) * ca + (vv - 1.0) * cb  # one unbiased estimate per frequency
        per_scale.append(float(est_f.mean()))
        feat_var.append(float(est_f.var(ddof=1) / est_f.size) if est_f.size > 1 else 0.0)
    values = np.array(per_scale)
    value = values if per_bandwidth else float(values.sum())
    if not return_stderr:
        return value, None
    # Sampling error given the features, per bandwidth:
    # f_i = (phi_i.u - a_i)/(1 - sum a^2) - phi_i.v  and  g_j = (phi_j.v - b_j)/(1 - sum b^2) - phi_j.u
    sums = [(u, v) for u, v in zip(sx, sy)]
    px, py = rff_pass(x, a, center, omegas, sums), rff_pass(y, b, center, omegas, sums)
    f = (px[:, 0] - ua) / (1.0 - sa) - px[:, 1]
    g = (py[:, 1] - ub) / (1.0 - sb) - py[:, 0]
    if per_bandwidth:
        samp = [4.0 * (_weighted_var_of_mean(fk, ua) + _weighted_var_of_mean(gk, ub)) for fk, gk in zip(f, g)]
        return value, np.sqrt(np.array(feat_var) + np.array(samp))
    samp_var = 4.0 * (_weighted_var_of_mean(f.sum(0), ua) + _weighted_var_of_mean(g.sum(0), ub))
    return value, float(np.sqrt(sum(feat_var) + samp_var))


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
    per_bandwidth: bool = False,
    return_stderr: bool = False,
    block_size: int = 256,
    n_features: int = 512,
    seed: Any = 0,
    precision: str = "highest",
) -> Any:
    r"""Squared maximum mean discrepancy between the samples x and y.

    Estimators (``estimator=``):

    ``"unbiased"`` (alias ``"exact"``) - the U-statistic of Gretton et al. (2012, eq. 3),
    diagonals excluded, every pair evaluated exactly:

    .. math::
        \frac{1}{n(n-1)}\sum_{i\ne j} k(x_i,x_j) + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i,y_j)
        - \frac{2}{nm}\sum_{i,j} k(x_i,y_j)

    ``"biased"`` - the V-statistic (eq. 5): all pairs, 1/n^2 and 1/m^2.  >= 0 for
    a positive definite kernel; the unbiased one can be slightly negative when the
    distributions are equal.  Both cost O((n + m)^2 d).

    ``"block"`` - the block (incomplete U-) statistic of Zaremba et al. (2013): the
    rows of x and y, in a seeded random order, are cut into min(n, m) // block_size
    blocks; the estimate is the mean of the blocks' unbiased MMD^2 and its
    standard error their standard deviation / sqrt(#blocks).  Cost
    O(min(n, m) * block_size * d); variance O(1 / (min(n, m) * block_size)).
    Rows beyond the last whole block are not used.

    ``"linear"`` - Gretton et al.'s linear-time statistic (2012, sec. 6): the mean over
    disjoint pairs of h = k(x, x') + k(y, y') - k(x, y') - k(x', y), with the
    standard error std(h) / sqrt(#pairs).  Cost O(min(n, m) d), variance O(1/n).

    ``"rff"`` - random Fourier features (Rahimi & Recht 2007; Zhao & Meng 2015) for
    the gaussian and laplacian kernels: ``n_features`` frequencies per bandwidth
    drawn from the kernel's spectral density (normal, resp. multivariate Cauchy),
    features [cos, sin]; the unbiased form of MMD^2 in feature space, which is
    unbiased for the exact MMD^2 over the draw of the frequencies.  Its standard
    error adds the spread over frequencies to the sampling error.  Cost
    O((n + m) d D).

    With weights a (for x) and b (for y), normalised to sum 1, the weighted
    V-statistic  sum a_i a_j k(x_i,x_j) + sum b_i b_j k(y_i,y_j) - 2 sum a_i b_j k(x_i,y_j);
    with ``estimator="unbiased"`` the self terms become
    sum_{i!=j} a_i a_j k(x_i,x_j) / (1 - sum a_i^2), which equals the U-statistic for
    uniform weights.  The block and linear estimators take no weights.

    Standard errors (``return_stderr=True``) of the exact estimators come from the
    first-order (H-) decomposition, Var ~ 4 Var(f)/n + 4 Var(g)/m with
    f_i = E_x' k(x_i, x') - E_y k(x_i, y) and g likewise, computed with four fused
    row-sum contractions (about twice the cost of the estimate).  Under the null
    hypothesis this first-order term vanishes: use :func:`simgap.mmd_test` for a p-value.

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
        and y pooled.  A list of sigmas (gaussian) sums the kernels, or, with
        ``per_bandwidth=True``, gives one MMD^2 per sigma from one pass over the
        pairs (exact estimators and rff).
    estimator : {"unbiased", "exact", "biased", "block", "linear", "rff"} or None
        None means "unbiased" without weights and "biased" with weights.
    x_weights, y_weights : array_like, shape (n,) / (m,), optional
        Non-negative sample weights (normalised to sum 1).
    gamma, coef0, degree : polynomial kernel parameters (gamma defaults to 1/d).
    per_bandwidth : bool, default False
        Return one value per bandwidth instead of the value of their sum.
    return_stderr : bool, default False
        Also return the estimate's standard error (NaN where the estimator
        has a single term to spread: the linear estimator with fewer than 4
        rows in the smaller set, the block estimator with one block).
    block_size : int, default 256
        Rows per block for ``estimator="block"``.
    n_features : int, default 512
        Frequencies per bandwidth for ``estimator="rff"``.
    seed : int, default 0
        Seed of the row order (block, linear) and of the frequencies (rff).
    precision : {"highest", "tf32", "bf16"}, default "highest"
        Precision of the inner products; "tf32" and "bf16" (tensor cores,
        CUDA tensors only) are described in :func:`simgap.kernel_contract`.

    Returns
    -------
    float, or ndarray of shape (n_bandwidths,) with ``per_bandwidth``; with
    ``return_stderr``, a tuple (estimate, standard error).  Float32 inputs are
    multiplied in float32 and summed in float64.  CUDA tensors (x, y and the
    weights on one device) are computed on the GPU, every estimator and
    option included, with the same row orders and frequencies as on the CPU
    for a seed.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 16))
    >>> y = rng.normal(0.5, 1.0, size=(400, 16))
    >>> simgap.mmd2(x, y) > 0.05
    True
    >>> value, se = simgap.mmd2(x, y, estimator="block", block_size=50, return_stderr=True)
    """
    check_seed(seed)
    per_bandwidth = check_flag(per_bandwidth, "per_bandwidth")
    return_stderr = check_flag(return_stderr, "return_stderr")
    device = device_of(x=x, y=y, x_weights=x_weights, y_weights=y_weights)
    precision = check_precision(precision, device)
    gpu = None
    if device != "cpu":
        from ._ops import cuda as gpu

        xa, ya, same = gpu.cuda_pair(x, y)
        a = gpu._weights(x_weights, xa.shape[0], "x_weights", xa.device)
        b = gpu._weights(y_weights, ya.shape[0], "y_weights", xa.device)
    else:
        xa, ya = as_matrix(x, "x"), as_matrix(y, "y")
        check_same_features(xa, ya)
        a = as_weights(x_weights, xa.shape[0], "x_weights")
        b = as_weights(y_weights, ya.shape[0], "y_weights")
    est = _check_estimator(estimator, a is not None or b is not None)
    n, m = xa.shape[0], ya.shape[0]
    if est == "unbiased":
        for rows, name in ((n, "x"), (m, "y")):
            if rows < 2:
                raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    if est in ("block", "linear") and (a is not None or b is not None):
        raise ValueError(f"x_weights / y_weights: the {est} estimator does not take weights")
    if est == "block":
        block_size = as_positive_int(block_size, "block_size", minimum=2)
        if min(n, m) < block_size:
            raise ValueError(
                f"block_size {block_size} is larger than the smaller sample ({min(n, m)} rows); "
                "use a smaller block_size"
            )
    if est == "linear" and min(n, m) < 2:
        raise ValueError("x, y: the linear estimator needs at least 2 rows in each sample")
    if est == "rff":
        n_features = as_positive_int(n_features, "n_features", minimum=2)
    if gpu is None:
        same = same_memory(xa, ya)
        dtype = common_dtype(xa, ya)
        xa, ya = cast(xa, dtype), cast(ya, dtype)
        if same:
            ya = xa
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa, ya],
                          median_fn=None if gpu is None else gpu.median_bandwidth)
    xa, ya = fit_kernel_values(spec, [xa, ya])
    if per_bandwidth and spec.name != "gaussian":
        raise ValueError(f"per_bandwidth: only the gaussian kernel takes several bandwidths, not {spec.name}")
    if est == "rff" and spec.name not in ("gaussian", "laplacian"):
        raise ValueError(
            f"estimator='rff' needs a kernel with a known spectral density (gaussian or laplacian), not {spec.name}"
        )

    if gpu is not None and est in ("unbiased", "biased"):
        return gpu.mmd2_exact(xa, ya, a, b, spec, est == "unbiased", same, precision, per_bandwidth,
                              return_stderr)
    if est in ("unbiased", "biased") and not return_stderr:
        value = _exact(xa, ya, a, b, spec, est == "unbiased", per_bandwidth)
        return value if per_bandwidth else float(value)
    if est == "rff":
        if gpu is None:
            value, se = _rff(xa, ya, a, b, spec, n_features, seed, return_stderr, per_bandwidth)
        else:  # the passes over the rows on the device, the D-length sums on the host
            host = [None if w is None else w.cpu().numpy() for w in (a, b)]
            center = gpu._center([xa, ya], spec).cpu().numpy()
            value, se = _rff(xa, ya, *host, spec, n_features, seed, return_stderr, per_bandwidth, center,
                             gpu.rff_pass)
        return (value, se) if return_stderr else value

    def one(sp: KernelSpec) -> tuple[float, float]:
        if est in ("unbiased", "biased"):
            return _exact_with_stderr(xa, ya, a, b, sp, est == "unbiased")
        if est == "block":
            return (_block if gpu is None else gpu.mmd2_block)(xa, ya, sp, block_size, seed)
        return (_linear if gpu is None else gpu.mmd2_linear)(xa, ya, sp, seed)

    if per_bandwidth:
        pairs = [one(_single(spec, s)) for s in spec.bandwidths]
        values = np.array([p[0] for p in pairs])
        errors = np.array([p[1] for p in pairs])
        return (values, errors) if return_stderr else values
    value, se = one(spec)
    return (value, se) if return_stderr else value


def _single(spec: KernelSpec, sigma: float) -> KernelSpec:
    return KernelSpec(spec.name, (sigma,), spec.gamma, spec.coef0, spec.degree)


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
    precision: str = "highest",
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
    precision : {"highest", "tf32", "bf16"}, default "highest"
        See :func:`simgap.kernel_contract` ("tf32", "bf16": CUDA tensors only).

    Returns
    -------
    ndarray of float64, shape (len(ys),)
        Also for CUDA tensors (x, every set and weights on one device), which
        are computed on the GPU.

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
    if ys_weights is not None:
        devs.update({f"ys_weights[{k}]": v for k, v in enumerate(ys_weights)})
    device = device_of(**devs)
    precision = check_precision(precision, device)
    if device != "cpu":
        from ._ops import cuda as _cuda_ops

        if estimator is not None:
            _check_estimator(estimator, False, ("unbiased", "exact", "biased"))

        def spec_fn(arrays):
            return resolve_kernel(kernel, bandwidth, gamma, coef0, degree, arrays,
                                  median_fn=_cuda_ops.median_bandwidth)

        return _cuda_ops.mmd2_batch(x, list(ys), x_weights, ys_weights, spec_fn,
                                    None if estimator is None else estimator.lower(), precision)
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
    unbiased = _check_estimator(estimator, weighted, ("unbiased", "exact", "biased")) == "unbiased"
    if unbiased:
        for arr, name in [(xa, "x")] + [(ya, f"ys[{k}]") for k, ya in enumerate(ya_list)]:
            if arr.shape[0] < 2:
                raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    dtype = common_dtype(xa, *ya_list)
    xa = cast(xa, dtype)
    ya_list = [cast(ya, dtype) for ya in ya_list]
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa, *ya_list])
    xa, *ya_list = fit_kernel_values(spec, [xa, *ya_list])
    kxx = _self_term(xa, a, spec, unbiased, "x_weights")
    out = np.empty(len(ya_list), dtype=np.float64)
    for k, (ya, b) in enumerate(zip(ya_list, b_list)):
        kyy = _self_term(ya, b, spec, unbiased, f"ys_weights[{k}]")
        out[k] = kxx + kyy - 2.0 * _cross_term(xa, ya, a, b, spec)
    return out


@dataclass(frozen=True)
class MMDTestResult:
    """Result of :func:`mmd_test`.

    Attributes
    ----------
    statistic : float
        MMD^2 of the observed split (same estimator as the null samples).
    p_value : float
        (1 + #{null >= statistic}) / (1 + n_permutations); a null value within
        1e-9 of the kernel's scale (the mean |kernel value|) of the statistic
        counts as a tie, so as >= (equal relabellings differ by rounding).
    n_permutations : int
    null_distribution : ndarray, shape (n_permutations,)
        MMD^2 of each random relabelling of the pooled sample.
    estimator : str
        "unbiased" or "biased".
    kernel : str
    bandwidth : tuple of float
        The bandwidths used (the median heuristic's value when "median").
    """

    statistic: float
    p_value: float
    n_permutations: int
    null_distribution: np.ndarray = field(repr=False)
    estimator: str
    kernel: str
    bandwidth: tuple

    def to_dict(self) -> dict:
        """Plain-data form (JSON-serialisable)."""
        out = asdict(self)
        out["null_distribution"] = self.null_distribution.tolist()
        out["bandwidth"] = list(self.bandwidth)
        return out


_TEST_MEMORY_BYTES = 256 << 20


def mmd_test(
    x: Any,
    y: Any,
    n_permutations: int = 1000,
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    estimator: str = "unbiased",
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    seed: Any = 0,
    precision: str = "highest",
) -> MMDTestResult:
    r"""Permutation two-sample test with the MMD^2 statistic, in one pass.

    The pooled sample z = (x, y) is relabelled ``n_permutations`` times; every
    relabelling's MMD^2 is read off one batched kernel contraction
    C = K'(z, z) [1, A] (K' without its diagonal for the unbiased estimator),
    where the columns of A are the 0/1 indicators of the rows labelled "x".
    With a = A[:, p], s = K' 1 and T = 1' K' 1:

        S_xx = a' K' a,  S_xy = a' s - S_xx,  S_yy = T - 2 a' s + S_xx

    and MMD^2 = S_xx / (n(n-1)) + S_yy / (m(m-1)) - 2 S_xy / (nm) (unbiased), or
    with n^2, m^2 (biased).  The kernel is evaluated once per batch of
    relabellings, not once per relabelling (batches keep the contraction's
    output under about 256 MB).

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
    n_permutations : int, default 1000
    kernel, bandwidth, gamma, coef0, degree
        As in :func:`mmd2`; "median" is computed once on the pooled sample.
    estimator : {"unbiased", "biased"}, default "unbiased"
    seed : int, default 0
        Seed of the relabellings (``numpy.random.default_rng``).
    precision : {"highest", "tf32", "bf16"}, default "highest"
        See :func:`simgap.kernel_contract` ("tf32", "bf16": CUDA tensors only).

    CUDA tensors (x and y on one device) run the contraction on the GPU with
    the same relabellings as the CPU for the same seed: only the 0/1 labels
    are sent to the device and only the statistics come back.

    Returns
    -------
    MMDTestResult
        ``p_value = (1 + #{null >= observed}) / (1 + n_permutations)``, ties
        within rounding counted as >= (see :class:`MMDTestResult`).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(200, 5)), rng.normal(0.3, 1, size=(200, 5))
    >>> simgap.mmd_test(x, y, n_permutations=200).p_value < 0.05
    True
    """
    check_seed(seed)
    if estimator is None:
        raise ValueError("estimator must be 'unbiased' or 'biased', got None")
    device = device_of(x=x, y=y)
    precision = check_precision(precision, device)
    n_permutations = as_positive_int(n_permutations, "n_permutations")
    est = _check_estimator(estimator, False, ("unbiased", "exact", "biased"))
    unbiased = est == "unbiased"
    if device == "cpu":
        xa, ya = as_matrix(x, "x"), as_matrix(y, "y")
        check_same_features(xa, ya)
        dtype = common_dtype(xa, ya)
        z = np.concatenate([cast(xa, dtype), cast(ya, dtype)], axis=0)
        spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [z])
        (z,) = fit_kernel_values(spec, [z])
        center = z.mean(axis=0, dtype=np.float64) if spec.uses_distance else None

        def contract(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            out = np.zeros((z.shape[0], W.shape[1]))
            _C.kernel_contract(z, z, np.ascontiguousarray(W, dtype=z.dtype), out, *spec.args(), center,
                               True, unbiased)
            return out, W
    else:
        import torch

        from ._ops import cuda as _cuda_ops

        xa, ya, _ = _cuda_ops.cuda_pair(x, y)
        z = torch.cat([xa, ya], dim=0)
        spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [z],
                              median_fn=_cuda_ops.median_bandwidth)
        (z,) = fit_kernel_values(spec, [z])
        center = z.mean(dim=0, dtype=torch.float64) if spec.uses_distance else None

        def contract(W: np.ndarray):
            # Only the 0/1 labels travel to the device; the contraction's
            # (N x q) output is reduced there and only q values come back.
            Wd = torch.as_tensor(W, device=z.device)
            return _cuda_ops.contract(z, z, Wd, spec, center, True, unbiased, precision), Wd

    n, m = xa.shape[0], ya.shape[0]
    if unbiased and min(n, m) < 2:
        raise ValueError("x, y: the unbiased estimator needs at least 2 rows in each sample")
    N = n + m
    rng = np.random.default_rng(seed)

    if unbiased:
        dxx, dyy, dxy = n * (n - 1.0), m * (m - 1.0), n * float(m)
    else:
        dxx, dyy, dxy = n * float(n), m * float(m), n * float(m)

    n_cols = n_permutations + 1  # the observed labelling first
    per_col = N * (8 + z.itemsize)
    batch = int(max(1, min(n_cols, _TEST_MEMORY_BYTES // per_col)))
    values = np.empty(n_cols)
    s = None
    total = 0.0
    done = 0
    while done < n_cols:
        q = min(batch, n_cols - done)
        first = s is None
        labels = np.zeros((N, q), dtype=np.float64)
        for c in range(q):
            if done + c == 0:
                labels[:n, c] = 1.0
            else:
                labels[rng.permutation(N)[:n], c] = 1.0
        W = labels if not first else np.concatenate([np.ones((N, 1)), labels], axis=1)
        out, W = contract(W)  # numpy arrays, or CUDA tensors for CUDA inputs
        labels = W[:, 1:] if first else W
        if first:
            s = out[:, 0] * 1.0  # a copy, in either library
            total = float(s.sum())
            out = out[:, 1:]
        # With a = labels[:, c]: S_xx = a' C, S_xy = a' s - S_xx, S_yy = T - 2 a' s + S_xx.
        sxx = (np if device == "cpu" else torch).einsum("ij,ij->j", labels, out)
        as_ = labels.T @ s
        stats = sxx / dxx + (total - 2.0 * as_ + sxx) / dyy - 2.0 * (as_ - sxx) / dxy
        values[done : done + q] = stats if device == "cpu" else stats.cpu().numpy()
        done += q
    observed = float(values[0])
    null = values[1:]
    p_value = permutation_p_value(observed, null, total, N)
    return MMDTestResult(observed, p_value, n_permutations, null, est, spec.name, spec.bandwidths)


# Null statistics within this fraction of the kernel's scale of the observed one count as ties.
_TIE_TOLERANCE = 1e-9


def permutation_p_value(observed: float, null: np.ndarray, total: float, N: int) -> float:
    """(1 + #{null >= observed}) / (1 + len(null)), a null value within rounding
    of the observed one counting as >=: relabellings with the same statistic
    (duplicated or discrete data; x and y swapped when n = m) come out of
    different float64 sums a few ulps apart, and were counted as smaller.
    Rounding is judged against the kernel's scale, the mean |K| entry
    |total| / N^2, as the statistic is a difference of such means."""
    tol = _TIE_TOLERANCE * max(abs(total) / (float(N) * N), abs(observed))
    return (1.0 + float(np.count_nonzero(null >= observed - tol))) / (1.0 + len(null))
