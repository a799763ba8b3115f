"""Maximum mean discrepancy (MMD^2) between two samples, computed with the
fused kernel sums of the compute layer (the n x m kernel matrix is never
formed): the public functions check their inputs and options here and run the
estimators of :mod:`simgap._estimators`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ._estimators import (
    EXACT_ESTIMATORS,
    check_estimator,
    median_heuristic,
    mmd2_block,
    mmd2_exact,
    mmd2_exact_stderr,
    mmd2_linear,
    mmd2_rff,
    rff_memory,
    permutation_memory,
    permutation_null,
    permutation_p_value,
)
from ._estimators import mmd2_batch as _mmd2_batch
from ._ops.dispatch import check_precision
from ._ops.inputs import as_matrices, as_pair, as_weights, check_memory, device_of
from ._ops.spec import KernelSpec, fit_kernel_values, resolve_kernel, single_scale
from ._util.arrays import concat_rows
from ._util.checks import as_positive_int, check_flag, check_seed

__all__ = ["MMDTestResult", "mmd2", "mmd2_batch", "mmd_test"]


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
    xa, ya = as_pair(x, y, device=device)
    a = as_weights(x_weights, xa.shape[0], "x_weights", on=xa)
    b = as_weights(y_weights, ya.shape[0], "y_weights", on=ya)
    est = check_estimator(estimator, a is not None or b is not None)
    block_size, n_features = _check_estimator_inputs(est, xa.shape[0], ya.shape[0], a is not None or b is not None,
                                                     block_size, n_features)
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa, ya], median_fn=median_heuristic)
    xa, ya = fit_kernel_values(spec, [xa, ya])
    _check_kernel_for(est, spec, per_bandwidth)
    if est == "rff":
        check_memory(rff_memory(len(spec.bandwidths), xa.shape[1], n_features), "n_features", n_features,
                     "the random frequencies")
    return _estimate(est, xa, ya, a, b, spec, per_bandwidth=per_bandwidth, return_stderr=return_stderr,
                     block_size=block_size, n_features=n_features, seed=seed, precision=precision)


def _check_estimator_inputs(est: str, n: int, m: int, weighted: bool, block_size: Any,
                            n_features: Any) -> tuple[Any, Any]:
    """The sample sizes, weights and options the estimator needs; the checked
    block_size and n_features (as given where the estimator does not use them)."""
    if est == "unbiased":
        for rows, name in ((n, "x"), (m, "y")):
            if rows < 2:
                raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    if est in ("block", "linear") and weighted:
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
    return block_size, n_features


def _check_kernel_for(est: str, spec: KernelSpec, per_bandwidth: bool) -> None:
    if per_bandwidth and spec.name != "gaussian":
        raise ValueError(f"per_bandwidth: only the gaussian kernel takes several bandwidths, not {spec.name}")
    if est == "rff" and spec.name not in ("gaussian", "laplacian"):
        raise ValueError(
            f"estimator='rff' needs a kernel with a known spectral density (gaussian or laplacian), not {spec.name}"
        )


def _estimate(est: str, x, y, a, b, spec: KernelSpec, *, per_bandwidth: bool, return_stderr: bool,
              block_size: int, n_features: int, seed: Any, precision: str) -> Any:
    """The estimate (and its standard error) of the checked inputs."""
    unbiased = est == "unbiased"
    if est == "rff":
        value, se = mmd2_rff(x, y, a, b, spec, n_features, seed, return_stderr, per_bandwidth)
        return (value, se) if return_stderr else value
    if est in ("unbiased", "biased") and not return_stderr:
        return mmd2_exact(x, y, a, b, spec, unbiased, precision, per_bandwidth)

    def one(sp: KernelSpec) -> tuple[float, float]:
        if est == "block":
            return mmd2_block(x, y, sp, block_size, seed)
        if est == "linear":
            return mmd2_linear(x, y, sp, seed)
        return mmd2_exact_stderr(x, y, a, b, sp, unbiased, precision)

    if per_bandwidth:
        pairs = [one(single_scale(spec, s)) for s in spec.bandwidths]
        values = np.array([p[0] for p in pairs])
        errors = np.array([p[1] for p in pairs])
        return (values, errors) if return_stderr else values
    value, se = one(spec)
    return (value, se) if return_stderr else value


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
    ys = _as_sets(ys, ys_weights)
    named = [("x", x)] + [(f"ys[{k}]", y) for k, y in enumerate(ys)]
    weights = [x_weights] + [None if ys_weights is None else ys_weights[k] for k in range(len(ys))]
    wnames = ["x_weights"] + [f"ys_weights[{k}]" for k in range(len(ys))]
    device = device_of(**dict(named), **dict(zip(wnames, weights)))
    precision = check_precision(precision, device)
    arrays = as_matrices(named, device=device)
    ws = [as_weights(w, a.shape[0], name, on=a) for w, a, name in zip(weights, arrays, wnames)]
    unbiased = check_estimator(estimator, any(w is not None for w in ws), EXACT_ESTIMATORS) == "unbiased"
    if unbiased:
        for a, (name, _) in zip(arrays, named):
            if a.shape[0] < 2:
                raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, arrays, median_fn=median_heuristic)
    xa, *ya_list = fit_kernel_values(spec, arrays)
    return _mmd2_batch(xa, ya_list, ws[0], ws[1:], spec, unbiased, precision)


def _as_sets(ys: Any, ys_weights: Any) -> list:
    """ys as a list of sets (a 3-D array: its slices), checked against ys_weights."""
    if isinstance(ys, (np.ndarray, str)) or not isinstance(ys, Sequence):
        if hasattr(ys, "ndim") and getattr(ys, "ndim", 0) == 3:
            ys = list(ys)
        else:
            raise TypeError("ys must be a list or tuple of 2-D arrays (one per synthetic set)")
    if len(ys) == 0:
        raise ValueError("ys is empty; give at least one set")
    if ys_weights is not None and len(ys_weights) != len(ys):
        raise ValueError(f"ys_weights has {len(ys_weights)} entries but ys has {len(ys)}")
    return list(ys)


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
    est = check_estimator(estimator, False, EXACT_ESTIMATORS)
    unbiased = est == "unbiased"
    xa, ya = as_pair(x, y, device=device)
    check_memory(permutation_memory(xa.shape[0] + ya.shape[0], 8, n_permutations), "n_permutations",
                 n_permutations, "the null distribution and the relabellings")
    z = concat_rows(xa, ya)
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [z], median_fn=median_heuristic)
    (z,) = fit_kernel_values(spec, [z])
    n, m = xa.shape[0], ya.shape[0]
    if unbiased and min(n, m) < 2:
        raise ValueError("x, y: the unbiased estimator needs at least 2 rows in each sample")
    values, total = permutation_null(z, n, spec, unbiased, n_permutations, seed, precision)
    observed = float(values[0])
    null = values[1:]
    p_value = permutation_p_value(observed, null, total, n + m)
    return MMDTestResult(observed, p_value, n_permutations, null, est, spec.name, spec.bandwidths)
