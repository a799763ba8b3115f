"""The MMD estimators and the median heuristic, written once over
:mod:`simgap._ops.dispatch` for NumPy, CPU-torch and CUDA inputs alike.

Inputs are checked (:mod:`simgap._ops.inputs`), of one dtype, on one device:
NumPy arrays or CUDA tensors; weights are normalised float64 on the same
device, or None.  The public statistics (:mod:`simgap.mmd`,
:mod:`simgap.kernels`) validate and call these; :mod:`simgap.distributed`
reuses the assembly of MMD^2 from kernel sums (:func:`self_divisor`,
:func:`cross_divisor`, :func:`assemble_mmd2`) and of the permutation
statistics (:func:`permutation_statistics`, :func:`permutation_p_value`) over
its sharded sums.

Exact estimators.  With sums S_xx = a' K(x, x) a (diagonal excluded for the
unbiased estimator), S_yy likewise and S_xy = a' K(x, y) b (a, b the weights,
ones when None):

    MMD^2 = S_xx / D_xx + S_yy / D_yy - 2 S_xy / D_xy

with D_xx = n (n - 1) (unbiased) or n^2 (biased) unweighted, 1 - sum a_i^2
(unbiased) or 1 (biased) weighted, and D_xy = n m, n, m or 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._ops import dispatch
from ._ops.inputs import same_memory
from ._ops.spec import KernelSpec
from ._util.arrays import like, take_rows, to_host
from ._util.checks import subsample_rows

__all__ = ["ESTIMATORS", "EXACT_ESTIMATORS", "ROW_CHUNK_ELEMENTS", "TEST_MEMORY_BYTES", "TIE_TOLERANCE",
           "check_estimator", "median_heuristic", "self_divisor", "cross_divisor", "assemble_mmd2", "self_term",
           "cross_term", "mmd2_exact", "mmd2_exact_stderr", "weighted_var_of_mean", "mmd2_block", "mmd2_linear",
           "RFF_KERNELS", "rff_memory", "rff_frequencies", "rff_weight_terms", "rff_per_frequency", "mmd2_rff", "mmd2_batch", "permutation_divisors", "permutation_statistics",
           "permutation_memory", "permutation_null", "permutation_p_value"]

ESTIMATORS = ("unbiased", "exact", "biased", "block", "linear", "rff")
EXACT_ESTIMATORS = ("unbiased", "exact", "biased")
ROW_CHUNK_ELEMENTS = 1 << 22  # rows gathered per step by the linear and rff estimators
TEST_MEMORY_BYTES = 256 << 20  # the permutation test's contraction output per batch of relabellings
# Null statistics within this fraction of the kernel's scale of the observed one count as ties.
TIE_TOLERANCE = 1e-9
RFF_KERNELS = ("gaussian", "laplacian")  # the kernels with a known spectral density


def check_estimator(estimator: Any, weighted: bool, allowed: Sequence[str] = ESTIMATORS) -> str:
    """The estimator's name ("exact" is "unbiased"); None: "biased" with
    weights, else "unbiased"."""
    if estimator is None:
        return "biased" if weighted else "unbiased"
    if not isinstance(estimator, str) or estimator.lower() not in allowed:
        raise ValueError(f"estimator must be one of {tuple(allowed)} (or None); got {estimator!r}")
    est = estimator.lower()
    return "unbiased" if est == "exact" else est


# ---- the median heuristic ----------------------------------------------------------------------

def median_heuristic(arrays: Sequence[Any], max_points: int, seed: Any) -> float:
    """The median distance between distinct rows of the pooled arrays, over the
    seeded subsample of :func:`simgap._util.checks.subsample_rows`; the median
    of the positive distances if it is 0, and 1.0 without any (a single point,
    or all identical).  See :func:`simgap.median_bandwidth`."""
    counts = [a.shape[0] for a in arrays]
    if sum(counts) < 2:  # no pair of distinct points: no positive distance
        return 1.0
    parts = [take_rows(a, sel) for a, sel in zip(arrays, subsample_rows(counts, max_points, seed)) if sel.size]
    dist = dispatch.pair_distances(parts)
    med = dispatch.median(dist)
    if med > 0:
        return med
    positive = dist[dist > 0]
    return dispatch.median(positive) if len(positive) else 1.0


# ---- the assembly of MMD^2 from kernel sums -----------------------------------------------------

def self_divisor(n: int, sum_sq: float | None, unbiased: bool, name: str) -> float:
    """D_xx of a set of n rows: n (n - 1) or n^2 unweighted (``sum_sq`` None);
    weighted, with ``sum_sq`` = sum a_i^2 of the normalised weights,
    1 - sum_sq (unbiased; ValueError naming ``name`` when that leaves no
    weight on two samples) or 1."""
    if sum_sq is None:
        return n * (n - 1.0) if unbiased else n * float(n)
    if not unbiased:
        return 1.0
    div = 1.0 - sum_sq
    if div <= 1e-12:
        raise ValueError(f"{name}: the unbiased estimator needs positive weight on at least two samples")
    return div


def cross_divisor(n: int, m: int, x_weighted: bool, y_weighted: bool) -> float:
    """D_xy: n for unweighted x (else 1) times m for unweighted y (else 1)."""
    return (1.0 if x_weighted else float(n)) * (1.0 if y_weighted else float(m))


def assemble_mmd2(sxx: Any, syy: Any, sxy: Any, dxx: float, dyy: float, dxy: float) -> Any:
    """S_xx / D_xx + S_yy / D_yy - 2 (S_xy / D_xy): floats, or arrays (one per bandwidth)."""
    return sxx / dxx + syy / dyy - 2.0 * (sxy / dxy)


def _sum_sq(w: Any) -> float | None:
    return None if w is None else float(w @ w)


# ---- the exact estimators -----------------------------------------------------------------------

def self_term(z, w, spec: KernelSpec, unbiased: bool, name: str, precision: str = "highest",
              per_bandwidth: bool = False) -> tuple[Any, float]:
    """(S_zz, D_zz): the sum of k(z, z') over distinct pairs (unbiased) or all
    pairs (biased), weighted by w (None: ones), the rows centred on their own
    mean (an array per bandwidth with ``per_bandwidth``), and its divisor."""
    div = self_divisor(z.shape[0], _sum_sq(w), unbiased, name)
    s = dispatch.self_sum(z, w, spec, dispatch.pooled_center([z], spec), unbiased, precision, per_bandwidth)
    return (s[1] if per_bandwidth else s), div


def cross_term(x, y, a, b, spec: KernelSpec, precision: str = "highest",
               per_bandwidth: bool = False) -> tuple[Any, float]:
    """(S_xy, D_xy): the sum of a_i k(x_i, y_j) b_j over all pairs, the rows
    centred on the pooled mean, and its divisor."""
    s = dispatch.kernel_sum(x, y, a, b, spec, dispatch.pooled_center([x, y], spec), same_memory(x, y),
                            precision, per_bandwidth)
    return (s[1] if per_bandwidth else s), cross_divisor(x.shape[0], y.shape[0], a is not None, b is not None)


def mmd2_exact(x, y, a, b, spec: KernelSpec, unbiased: bool, precision: str = "highest",
               per_bandwidth: bool = False) -> Any:
    """The U- (``unbiased``) or V-statistic, weighted or not, from fused kernel
    sums: a float, or an array of one value per gaussian bandwidth (one pass
    over the pairs) with ``per_bandwidth``."""
    sxx, dxx = self_term(x, a, spec, unbiased, "x_weights", precision, per_bandwidth)
    syy, dyy = self_term(y, b, spec, unbiased, "y_weights", precision, per_bandwidth)
    sxy, dxy = cross_term(x, y, a, b, spec, precision, per_bandwidth)
    value = assemble_mmd2(sxx, syy, sxy, dxx, dyy, dxy)
    return value if per_bandwidth else float(value)


def weighted_var_of_mean(values, w) -> float:
    """Variance of sum_i w_i values_i for independent draws (sum w = 1).

    values and w are 1-D NumPy arrays or tensors."""
    w2 = float(w @ w)
    if w2 >= 1.0 - 1e-12:
        return 0.0
    centred = values - float(w @ values)
    return float((w * w) @ (centred * centred)) / (1.0 - w2)


def _uniform(w, a):
    """w, or weights 1/n on the n rows of a (on its device)."""
    return like(np.full(a.shape[0], 1.0 / a.shape[0]), a) if w is None else w


def mmd2_exact_stderr(x, y, a, b, spec: KernelSpec, unbiased: bool, precision: str = "highest") -> tuple[float, float]:
    """Exact estimate and its first-order standard error from kernel row sums.

    With f_i = E_x' k(x_i, x') - E_y k(x_i, y) and g_j = E_y' k(y_j, y') - E_x k(x, y_j)
    (leave-one-out for the unbiased estimator), Var(MMD^2) ~ 4 Var(f)/n + 4 Var(g)/m
    (the H-decomposition of the two-sample U-statistic, Serfling 1980, 5.3),
    from four row-sum contractions.
    """
    ua, ub = _uniform(a, x), _uniform(b, y)
    na = 1.0 - float(ua @ ua) if unbiased else 1.0
    nb = 1.0 - float(ub @ ub) if unbiased else 1.0
    if na <= 1e-12 or nb <= 1e-12:
        raise ValueError("x_weights / y_weights: the unbiased estimator needs weight on at least two samples")
    center = dispatch.pooled_center([x, y], spec)

    def rows(p, q, w, same, exclude):
        return dispatch.kernel_contract(p, q, w.reshape(-1, 1), spec, center, same, exclude, precision)[:, 0]

    rxx = rows(x, x, ua, True, unbiased)
    ryy = rows(y, y, ub, True, unbiased)
    rxy = rows(x, y, ub, False, False)
    ryx = rows(y, x, ua, False, False)
    f = rxx / na - rxy
    g = ryy / nb - ryx
    value = float(ua @ rxx) / na + float(ub @ ryy) / nb - 2.0 * float(ua @ rxy)
    var = 4.0 * (weighted_var_of_mean(f, ua) + weighted_var_of_mean(g, ub))
    return value, float(np.sqrt(max(var, 0.0)))


# ---- the block and linear estimators ------------------------------------------------------------

def _mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    """The mean of independent terms and its standard error (NaN for one term)."""
    k = values.shape[0]
    se = float(values.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
    return float(values.mean()), se


def mmd2_block(x, y, spec: KernelSpec, block_size: int, seed: Any) -> tuple[float, float]:
    """The block (incomplete U-) statistic: the mean of the unbiased MMD^2 of
    min(n, m) // block_size blocks of rows in a seeded random order, and its
    standard error."""
    n, m = x.shape[0], y.shape[0]
    nb = min(n, m) // block_size
    rng = np.random.default_rng(seed)
    ix = rng.permutation(n)[: nb * block_size].astype(np.int64)
    iy = rng.permutation(m)[: nb * block_size].astype(np.int64)
    out = dispatch.mmd_blocks(x, y, ix, iy, block_size, spec, dispatch.pooled_center([x, y], spec))
    return _mean_and_stderr(to_host(out))


def mmd2_linear(x, y, spec: KernelSpec, seed: Any) -> tuple[float, float]:
    """Gretton et al.'s linear-time statistic: the mean over disjoint pairs (in a
    seeded random order) of h = k(x, x') + k(y, y') - k(x, y') - k(x', y), and
    its standard error; rows gathered in chunks."""
    n, m = x.shape[0], y.shape[0]
    npairs = min(n, m) // 2
    rng = np.random.default_rng(seed)
    ix = rng.permutation(n)[: 2 * npairs]
    iy = rng.permutation(m)[: 2 * npairs]
    h = np.empty(npairs)
    step = max(1, ROW_CHUNK_ELEMENTS // (4 * x.shape[1]))
    for s in range(0, npairs, step):
        e = min(npairs, s + step)
        x1, x2 = take_rows(x, ix[2 * s : 2 * e : 2]), take_rows(x, ix[2 * s + 1 : 2 * e : 2])
        y1, y2 = take_rows(y, iy[2 * s : 2 * e : 2]), take_rows(y, iy[2 * s + 1 : 2 * e : 2])
        k = [dispatch.kernel_rowwise(p, q, spec) for p, q in ((x1, x2), (y1, y2), (x1, y2), (x2, y1))]
        h[s:e] = to_host(k[0] + k[1] - k[2] - k[3])
    return _mean_and_stderr(h)


# ---- random Fourier features --------------------------------------------------------------------

def rff_memory(n_bandwidths: int, d: int, n_features: int) -> float:
    """Bytes :func:`mmd2_rff` needs beyond the data: per bandwidth the (d, D)
    frequencies (drawn in float64, then cast) and a few float64 vectors of
    length D."""
    return float(n_bandwidths) * float(n_features) * (24.0 * d + 96.0)


def rff_frequencies(spec: KernelSpec, d: int, n_features: int, seed: Any, dtype) -> list[np.ndarray]:
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


def rff_weight_terms(sa: float, sb: float) -> tuple[float, float]:
    """(sa / (1 - sa), sb / (1 - sb)) from the sums of squares of the
    normalised weights of x and y (1/n unweighted): the weight of the diagonal
    terms the unbiased form removes; ValueError when a set has no weight on two
    samples."""
    if sa >= 1 - 1e-12 or sb >= 1 - 1e-12:
        raise ValueError("x_weights / y_weights: the rff estimator needs weight on at least two samples")
    return sa / (1.0 - sa), sb / (1.0 - sb)


def rff_per_frequency(sx, sy, ca: float, cb: float) -> tuple[np.ndarray, list[float]]:
    """From the weighted feature sums of x and y (:func:`simgap._ops.dispatch.rff_sums`,
    per bandwidth (sum w cos, sum w sin) of length D) and :func:`rff_weight_terms`:
    per bandwidth the mean over its D frequencies of the unbiased per-frequency
    estimates (an array), and the variance of that mean over the frequencies."""
    per_scale, feat_var = [], []
    for (cx, snx), (cy, sny) in zip(sx, sy):
        uu = cx * cx + snx * snx
        vv = cy * cy + sny * sny
        diff = (cx - cy) ** 2 + (snx - sny) ** 2
        est_f = diff + (uu - 1.0) * ca + (vv - 1.0) * cb  # one unbiased estimate per frequency
        per_scale.append(float(est_f.mean()))
        feat_var.append(float(est_f.var(ddof=1) / est_f.size) if est_f.size > 1 else 0.0)
    return np.array(per_scale), feat_var


def mmd2_rff(x, y, a, b, spec: KernelSpec, n_features: int, seed: Any, return_stderr: bool,
             per_bandwidth: bool) -> tuple[Any, Any]:
    """Random-Fourier-feature estimate (unbiased form) and its standard error
    (None without ``return_stderr``).

    MMD^2 is estimated per frequency; the mean over the D frequencies of a
    bandwidth is unbiased for that bandwidth's MMD^2 (the features' inner
    product is unbiased for the kernel).  The standard error adds the spread over
    frequencies to the sampling error (H-decomposition, second pass over the data).
    The passes over the rows run where the rows are; the D-length sums on the host.
    """
    a, b = (None if w is None else to_host(w) for w in (a, b))
    n, m = x.shape[0], y.shape[0]
    ua = np.full(n, 1.0 / n) if a is None else a
    ub = np.full(m, 1.0 / m) if b is None else b
    sa, sb = float(np.dot(ua, ua)), float(np.dot(ub, ub))
    ca, cb = rff_weight_terms(sa, sb)
    center = to_host(dispatch.pooled_center([x, y]))  # rff kernels are distance kernels
    dtype = np.float64 if str(x.dtype).endswith("float64") else np.float32
    omegas = rff_frequencies(spec, x.shape[1], n_features, seed, dtype)

    def sums(z, w, want=None):
        return dispatch.rff_sums(z, w, center, omegas, want, chunk_elements=ROW_CHUNK_ELEMENTS)

    sx, sy = sums(x, a), sums(y, b)
    values, feat_var = rff_per_frequency(sx, sy, ca, cb)
    value = values if per_bandwidth else float(values.sum())
    if not return_stderr:
        return value, None
    # Sampling error given the features, per bandwidth:
    # f_i = (phi_i.u - a_i)/(1 - sum a^2) - phi_i.v  and  g_j = (phi_j.v - b_j)/(1 - sum b^2) - phi_j.u
    both = [(u, v) for u, v in zip(sx, sy)]
    px, py = sums(x, a, both), sums(y, b, both)
    f = (px[:, 0] - ua) / (1.0 - sa) - px[:, 1]
    g = (py[:, 1] - ub) / (1.0 - sb) - py[:, 0]
    if per_bandwidth:
        samp = [4.0 * (weighted_var_of_mean(fk, ua) + weighted_var_of_mean(gk, ub)) for fk, gk in zip(f, g)]
        return value, np.sqrt(np.array(feat_var) + np.array(samp))
    samp_var = 4.0 * (weighted_var_of_mean(f.sum(0), ua) + weighted_var_of_mean(g.sum(0), ub))
    return value, float(np.sqrt(sum(feat_var) + samp_var))


# ---- several sets against one ------------------------------------------------------------------

def mmd2_batch(x, ys: Sequence[Any], a, bs: Sequence[Any], spec: KernelSpec, unbiased: bool,
               precision: str = "highest") -> np.ndarray:
    """The exact MMD^2 between x and each set of ys (bs: their weights), the
    x-x term computed once."""
    sxx, dxx = self_term(x, a, spec, unbiased, "x_weights", precision)
    out = np.empty(len(ys), dtype=np.float64)
    for k, (y, b) in enumerate(zip(ys, bs)):
        syy, dyy = self_term(y, b, spec, unbiased, f"ys_weights[{k}]", precision)
        sxy, dxy = cross_term(x, y, a, b, spec, precision)
        out[k] = assemble_mmd2(sxx, syy, sxy, dxx, dyy, dxy)
    return out


# ---- the permutation test ----------------------------------------------------------------------

def permutation_divisors(n: int, m: int, unbiased: bool) -> tuple[float, float, float]:
    """(D_xx, D_yy, D_xy) of unweighted sets of n and m rows."""
    return self_divisor(n, None, unbiased, "x"), self_divisor(m, None, unbiased, "y"), cross_divisor(n, m, False,
                                                                                                    False)


def permutation_statistics(sxx: Any, as_: Any, total: float, dxx: float, dyy: float, dxy: float) -> Any:
    """MMD^2 of relabellings of the pooled sample z from C = K'(z, z) [1, A]:
    with a the 0/1 column of a relabelling, s = K' 1 and T = 1' K' 1,
    S_xx = a' K' a (``sxx``), a' s (``as_``), S_xy = a' s - S_xx and
    S_yy = T - 2 a' s + S_xx."""
    return sxx / dxx + (total - 2.0 * as_ + sxx) / dyy - 2.0 * (as_ - sxx) / dxy


def _relabellings(rng: np.random.Generator, N: int, n: int, q: int, done: int) -> np.ndarray:
    """q columns of 0/1 labels of the N pooled rows ("x" = 1), the observed
    labelling (the first n rows) as column 0 of the first batch."""
    labels = np.zeros((N, q), dtype=np.float64)
    for c in range(q):
        if done + c == 0:
            labels[:n, c] = 1.0
        else:
            labels[rng.permutation(N)[:n], c] = 1.0
    return labels


def permutation_memory(N: int, itemsize: int, n_permutations: int) -> float:
    """Bytes :func:`permutation_null` and the p-value need: the float64 null
    array (and a comparison mask over it), plus one batch of relabellings (the
    0/1 labels, their copy in the data's dtype and the contraction output)."""
    n_cols = float(n_permutations) + 1.0
    batch = min(n_cols, max(1.0, TEST_MEMORY_BYTES // (N * (8 + itemsize))))
    return 9.0 * n_cols + batch * N * (16.0 + itemsize)


def permutation_null(z, n: int, spec: KernelSpec, unbiased: bool, n_permutations: int, seed: Any,
                     precision: str = "highest") -> tuple[np.ndarray, float]:
    """MMD^2 of the observed split (the first n rows of z are x) and of
    ``n_permutations`` seeded relabellings, as one float64 array (observed
    first), and T = 1' K' 1.

    Every relabelling is read off one batched contraction C = K'(z, z) [1, A]
    per batch of columns (K' without its diagonal for the unbiased
    estimator), batches keeping C under ``TEST_MEMORY_BYTES``.  On CUDA only
    the 0/1 labels travel to the device and only the statistics come back.
    """
    N = z.shape[0]
    center = dispatch.pooled_center([z], spec)
    dxx, dyy, dxy = permutation_divisors(n, N - n, unbiased)
    rng = np.random.default_rng(seed)
    n_cols = n_permutations + 1  # the observed labelling first
    per_col = N * (8 + z.itemsize)
    batch = int(max(1, min(n_cols, TEST_MEMORY_BYTES // per_col)))
    values = np.empty(n_cols)
    s = None
    total = 0.0
    done = 0
    while done < n_cols:
        q = min(batch, n_cols - done)
        first = s is None
        labels = _relabellings(rng, N, n, q, done)
        W = like(labels if not first else np.concatenate([np.ones((N, 1)), labels], axis=1), z)
        out = dispatch.kernel_contract(z, z, W, spec, center, True, unbiased, precision)
        labels = W[:, 1:] if first else W
        if first:
            s = out[:, 0] * 1.0  # a copy, in either library
            total = float(s.sum())
            out = out[:, 1:]
        sxx = dispatch.column_dots(labels, out)
        stats = permutation_statistics(sxx, labels.T @ s, total, dxx, dyy, dxy)
        values[done : done + q] = to_host(stats)
        done += q
    return values, total


def permutation_p_value(observed: float, null: np.ndarray, total: float, N: int) -> float:
    """(1 + #{null >= observed}) / (1 + len(null)), a null value within rounding
    of the observed one counting as >=: relabellings with the same statistic
    (duplicated or discrete data; x and y swapped when n = m) come out of
    different float64 sums a few ulps apart, and were counted as smaller.
    Rounding is judged against the kernel's scale, the mean |K| entry
    |total| / N^2, as the statistic is a difference of such means."""
    tol = TIE_TOLERANCE * max(abs(total) / (float(N) * N), abs(observed))
    return (1.0 + float(np.count_nonzero(null >= observed - tol))) / (1.0 + len(null))
