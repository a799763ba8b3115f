"""Sharded MMD^2: :func:`mmd2` and :func:`mmd2_batch` over the ring of :mod:`.ring`.

Every rank checks its shards, the ranks agree on the options, dtype, weights
and kernel (:func:`kernel_precheck`, then the global median heuristic of
:func:`median`), then the kernel sums of every pair of shards are computed
once, on one rank, and added up in rank order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from .._estimators import (
    RFF_KERNELS,
    ROW_CHUNK_ELEMENTS,
    assemble_mmd2,
    check_estimator,
    cross_divisor,
    median_heuristic,
    rff_frequencies,
    rff_memory,
    rff_per_frequency,
    rff_weight_terms,
    self_divisor,
)
from .._ops import dispatch
from .._ops.inputs import check_memory, to_float64
from .._ops.spec import (
    BANDWIDTH_KERNELS,
    KernelSpec,
    bandwidth_values,
    check_kernel,
    resolve_kernel,
    values_log10_bound,
)
from .._util.arrays import common_device, like, take_rows, to_host
from .._util.checks import as_positive_int, subsample_rows
from .comm import Comm, agree, seed_draw, seed_option
from .ring import np_dtype, ring, ring_device, rows_half
from .shard import global_dtype, global_weights, rows_per_rank, shard_inputs

__all__ = ["kernel_precheck", "median", "mmd2", "mmd2_batch"]

_MEDIAN_MAX_POINTS = 2000  # the subsample of the single-process median heuristic
_MEDIAN_SEED = 0


def kernel_precheck(kernel, bandwidth, gamma, coef0, degree, d) -> tuple[KernelSpec, bool]:
    """Validate the kernel options locally; True when the median must be computed globally."""
    name = check_kernel(kernel)
    needs_median = name in BANDWIDTH_KERNELS and bandwidth_values(bandwidth, name) is None
    spec = resolve_kernel(kernel, 1.0 if needs_median else bandwidth, gamma, coef0, degree, [np.empty((0, d))])
    return spec, needs_median


def median(comm: Comm, sets: list[Any], metas: list[dict]) -> float:
    """The median heuristic of the pooled sets, computed as the single-process one.

    The same seeded subsample of at most 2000 global row indices is drawn on
    every rank; each rank contributes its rows of it, gathered in global order.
    """
    counts = [int(c) for k in range(len(sets)) for c in rows_per_rank(metas, k)]
    if sum(counts) < 2:
        return 1.0
    P = comm.world
    # chosen[k][r]: local row indices of set k on rank r (the pooled order: set by set, ranks in order)
    flat = subsample_rows(counts, _MEDIAN_MAX_POINTS, _MEDIAN_SEED)
    chosen = [flat[k * P : (k + 1) * P] for k in range(len(sets))]
    d = sets[0].shape[1]
    mine = [np.asarray(to_host(take_rows(s, chosen[k][comm.rank])), dtype=np.float64) for k, s in enumerate(sets)]
    local = np.concatenate(mine, axis=0) if mine else np.empty((0, d))
    per_rank = [sum(len(chosen[k][r]) for k in range(len(sets))) for r in range(comm.world)]
    got = comm.gather_rows(local.reshape(-1, d), per_rank)
    parts = []
    for k in range(len(sets)):
        for r in range(comm.world):
            before = sum(len(chosen[j][r]) for j in range(k))
            parts.append(got[r][before : before + len(chosen[k][r])])
    z = np.concatenate(parts, axis=0)
    return median_heuristic([z], _MEDIAN_MAX_POINTS, _MEDIAN_SEED)


def _mmd_setup(comm, prepare, kernel, bandwidth, gamma, coef0, degree, options, estimator, extra_check):
    """Shared preamble of mmd2 / mmd2_batch: validation, agreement, dtype, weights, kernel.

    prepare() returns (named sets, weight names, weight values); it runs inside the
    agreement so that a bad argument on one rank is reported on every rank.
    """
    def local():
        named, wnames, wvals = prepare()
        device = ring_device(comm, common_device(**{n: v for n, v in named}))
        arrays, ws, meta = shard_inputs(named, list(zip(wnames, wvals)), device)
        spec0, needs_median = kernel_precheck(kernel, bandwidth, gamma, coef0, degree, arrays[0].shape[1])
        meta["values_log10"] = values_log10_bound(spec0, arrays)
        check_estimator(estimator, any(w is not None for w in ws))
        meta.update(extra_check(spec0, arrays[0].shape[1]) or {})
        return (named, wnames, arrays, ws, spec0, needs_median), meta

    (named, wnames, arrays, ws, spec0, needs_median), metas = agree(comm, local, options)
    # From here on every decision depends only on what all ranks have seen: no rank can diverge.
    norms = [global_weights(metas, k, wnames[k]) for k in range(len(arrays))]
    est = check_estimator(estimator, any(nm is not None for nm in norms))
    unbiased = est == "unbiased"
    for k, (name, _) in enumerate(named):
        total = int(rows_per_rank(metas, k).sum())
        if total == 0:
            raise ValueError(f"{name} has 0 rows on every rank; at least one sample is needed")
        if unbiased and total < 2:
            raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    if global_dtype(metas) == np.float64:  # float64 rows on some rank, or float32 values would overflow
        arrays = [to_float64(a) for a in arrays]
    # Weights normalised by the global total, where the shards are; a weighted
    # set gets zeros(0) on ranks with no rows of it.
    ws = [None if nm is None else like(np.ascontiguousarray((np.zeros(0) if w is None else w) / nm[0]), arrays[0])
          for w, nm in zip(ws, norms)]
    spec = spec0
    if needs_median:
        spec = replace(spec0, bandwidths=(median(comm, arrays, metas),))
    means = [(sum(mt["colsum"][k] for mt in metas), int(rows_per_rank(metas, k).sum())) for k in range(len(arrays))]
    return wnames, arrays, ws, metas, norms, spec, est, means


def _mmd_ring(comm, arrays, ws, metas, spec, unbiased, centers_self, centers_cross, per_scale):
    """Global sums: self[k] = sum over pairs of set k, cross[k] = sum over set 0 x set k.

    Each is a float64 vector (total, then per bandwidth if per_scale).
    """
    K = len(arrays)
    width = 1 + (len(spec.bandwidths) if per_scale else 0)
    acc_self = np.zeros((K, width))
    acc_cross = np.zeros((K, width))
    dtype = np_dtype(arrays[0].dtype)
    d = arrays[0].shape[1]
    weighted = [w is not None for w in ws]
    # The centres where the shards are (the device-resident ring: on the GPU).
    centers_self, centers_cross = ([None if c is None else like(np.ascontiguousarray(c, dtype=np.float64), arrays[0])
                                    for c in cs] for cs in (centers_self, centers_cross))

    def ksum(A, B, a, b, center, diagonal):
        """a' K(A, B) b (diagonal: A is B, b is a, and unbiased leaves out the
        diagonal): [total] or [total, then each bandwidth alone] with per_scale."""
        if A.shape[0] == 0 or B.shape[0] == 0:
            return np.zeros(width)
        if diagonal:
            s = dispatch.self_sum(A, a, spec, center, unbiased, "highest", per_scale)
        else:
            s = dispatch.kernel_sum(A, B, a, b, spec, center, False, "highest", per_scale)
        return np.concatenate([[s[0]], s[1]]) if per_scale else np.array([s])

    def shapes_of(q):
        rows = metas[q]["rows"]
        shapes = [((rows[k], d), dtype) for k in range(K)]
        shapes += [((rows[k],), np.dtype(np.float64)) for k in range(K) if weighted[k]]
        return shapes

    def split(parts):
        xs = parts[:K]
        it = iter(parts[K:])
        return xs, [next(it) if weighted[k] else None for k in range(K)]

    def visit(q, parts, half):
        if q == comm.rank:
            for k in range(K):
                acc_self[k] += ksum(arrays[k], arrays[k], ws[k], ws[k], centers_self[k], True)
            for k in range(1, K):
                acc_cross[k] += ksum(arrays[0], arrays[k], ws[0], ws[k], centers_cross[k], False)
            return
        vx, vw = split(parts)
        if half is None:  # a whole off-diagonal pair of shards: (r, q) and its mirror (q, r)
            A, aw, B, bw = arrays, ws, vx, vw
            sl = [slice(None)] * K
        else:  # half of the rows of the lower rank's shard
            lower_is_me = comm.rank < q
            A, aw, B, bw = (arrays, ws, vx, vw) if lower_is_me else (vx, vw, arrays, ws)
            sl = [rows_half(A[k].shape[0], half) for k in range(K)]

        def rows(k):
            return A[k][sl[k]], (None if aw[k] is None else aw[k][sl[k]])

        for k in range(K):
            Ak, ak = rows(k)
            acc_self[k] += 2.0 * ksum(Ak, B[k], ak, bw[k], centers_self[k], False)
        A0, a0 = rows(0)
        for k in range(1, K):
            Ak, ak = rows(k)
            acc_cross[k] += ksum(A0, B[k], a0, bw[k], centers_cross[k], False)
            acc_cross[k] += ksum(B[0], Ak, bw[0], ak, centers_cross[k], False)

    parts = list(arrays) + [w for w in ws if w is not None]
    ring(comm, parts, shapes_of, visit)
    total = comm.sum_ranks(np.concatenate([acc_self.ravel(), acc_cross.ravel()]))
    return total[: K * width].reshape(K, width), total[K * width :].reshape(K, width)


def _sum_sq(norm: tuple[float, float] | None) -> float | None:
    """The sum of squares of a set's normalised weights (:func:`global_weights`), or None unweighted."""
    return None if norm is None else norm[1]


def _check_distributed(estimator: Any, allowed: tuple[str, ...]) -> None:
    """NotImplementedError for the estimators that are not distributed here."""
    est = estimator.lower() if isinstance(estimator, str) else estimator
    if est in ("block", "linear", "rff") and est not in allowed:
        names = ", ".join(repr(e) for e in ("unbiased", "biased") + allowed)
        raise NotImplementedError(
            f"simgap.distributed computes the estimators {names} here; "
            f"estimator={estimator!r} is not distributed yet (run simgap.mmd2 on one rank's shard instead)"
        )


def _mmd2_rff(comm: Comm, arrays: list, ws: list, spec: KernelSpec, means: list, n_features: int, seed: int,
              per_bandwidth: bool) -> Any:
    """The random-Fourier-feature estimate of :func:`simgap.mmd2` over the shards.

    Every rank draws the same frequencies from the agreed seed
    (:func:`simgap._estimators.rff_frequencies`, as on one process), computes
    the weighted feature sums of its rows (:func:`simgap._ops.dispatch.rff_sums`;
    unweighted rows weigh 1/n of the global n, as on one process) and the sum
    of squares of its weights; these are added over the ranks and assembled
    as on one process (:func:`simgap._estimators.rff_per_frequency`).
    """
    (sx, nx), (sy, ny) = means
    center = np.ascontiguousarray((sx + sy) / (nx + ny))  # rff kernels are distance kernels
    omegas = rff_frequencies(spec, arrays[0].shape[1], n_features, seed, np_dtype(arrays[0].dtype))
    K, D = len(omegas), n_features
    feats, squares = [], []
    for z, w, n in zip(arrays, ws, (nx, ny)):
        u = np.full(z.shape[0], 1.0 / n) if w is None else to_host(w)
        squares.append(float(np.dot(u, u)))
        parts = (dispatch.rff_sums(z, u, center, omegas, chunk_elements=ROW_CHUNK_ELEMENTS) if z.shape[0]
                 else [(np.zeros(D), np.zeros(D))] * K)
        feats.append(np.array(parts, dtype=np.float64))  # (K, 2, D)
    total = comm.sum_ranks(np.concatenate([np.stack(feats).ravel(), squares]))
    sums = total[: 2 * K * 2 * D].reshape(2, K, 2, D)
    ca, cb = rff_weight_terms(float(total[-2]), float(total[-1]))
    values, _ = rff_per_frequency([tuple(p) for p in sums[0]], [tuple(p) for p in sums[1]], ca, cb)
    return values if per_bandwidth else float(values.sum())


def mmd2(
    x: Any,
    y: Any,
    *,
    group: Any = None,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    estimator: str | None = None,
    x_weights: Any = None,
    y_weights: Any = None,
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    per_bandwidth: bool = False,
    n_features: int = 512,
    seed: Any = 0,
) -> Any:
    r"""MMD^2 between x and y, each given as one shard per rank.

    Every rank calls ``mmd2(x_local, y_local)`` with its own rows; every rank
    returns the value of :func:`simgap.mmd2` on ``x = concat(x shards in rank
    order)``, ``y = concat(y shards)`` with the same options (the U- or
    V-statistic, weighted or not; equal up to the order of float64 additions).

    The exact estimators: each block of kernel evaluations between two shards
    is computed once, on one rank, with the shards passed around half a ring
    (floor(P / 2) steps, the next shard in flight during the computation);
    memory per rank is three shards.  Communication: see
    :mod:`simgap.distributed`.  The rff estimator: every rank draws the same
    frequencies from ``seed``, computes the feature sums of its rows, and the
    sums (2 D values per bandwidth and set) are added over the ranks; nothing
    else travels.

    Parameters
    ----------
    x : array_like, shape (n_r, d)
        This rank's rows of x: NumPy array or torch tensor; may have 0 rows.
        CUDA tensors under NCCL stay on the GPU (see :mod:`simgap.distributed`).
    y : array_like, shape (m_r, d)
        This rank's rows of y.
    group : torch.distributed.ProcessGroup, optional
        The group of ranks that hold the shards (default: the default group).
    kernel, bandwidth, gamma, coef0, degree, per_bandwidth
        As in :func:`simgap.mmd2`; "median" is the single-process median
        heuristic of x and y pooled (same seeded subsample of 2000 rows,
        gathered).  Options must be equal on every rank.
    estimator : {"unbiased", "exact", "biased", "rff"} or None
        As in :func:`simgap.mmd2`: the exact U- ("unbiased" / "exact") or
        V-statistic ("biased"; the default with weights), or random Fourier
        features ("rff", gaussian and laplacian kernels).  "block" and
        "linear" are not distributed (NotImplementedError).
    n_features : int, default 512
        Frequencies per bandwidth for ``estimator="rff"``.
    seed : int or None, default 0
        Seed of the frequencies for ``estimator="rff"``, the same on every
        rank (None: rank 0 draws one for all); as :func:`simgap.mmd2` with
        the same integer seed.
    x_weights, y_weights : array_like, shape (n_r,) / (m_r,), optional
        This rank's weights; normalised by the global total.

    Returns
    -------
    float, or ndarray of shape (n_bandwidths,) with ``per_bandwidth``;
    the same on every rank.

    Examples
    --------
    Under ``torchrun --nproc_per_node=2``, after
    ``torch.distributed.init_process_group("gloo")``:

    >>> import numpy as np, simgap.distributed as sd
    >>> rank, world = 0, 2   # torch.distributed.get_rank(), get_world_size()
    >>> x = np.random.default_rng(0).normal(size=(1000, 8))
    >>> y = np.random.default_rng(1).normal(size=(900, 8))
    >>> xs = x[slice(*sd.shard_range(len(x), rank, world))]
    >>> ys = y[slice(*sd.shard_range(len(y), rank, world))]
    >>> sd.mmd2(xs, ys)  # doctest: +SKIP
    """
    comm = Comm(group)
    rff = isinstance(estimator, str) and estimator.lower() == "rff"
    options = ("mmd2", kernel, bandwidth, estimator, gamma, coef0, degree, per_bandwidth,
               n_features if rff else None, seed_option(seed) if rff else None)

    def check(spec, d):
        _check_distributed(estimator, ("rff",))
        if rff:
            D = as_positive_int(n_features, "n_features", minimum=2)
            check_memory(rff_memory(len(spec.bandwidths), d, D), "n_features", D, "the random frequencies")
        if per_bandwidth and spec.name != "gaussian":
            raise ValueError(f"per_bandwidth: only the gaussian kernel takes several bandwidths, not {spec.name}")
        if rff and spec.name not in RFF_KERNELS:
            raise ValueError(
                f"estimator='rff' needs a kernel with a known spectral density (gaussian or laplacian), not {spec.name}"
            )
        return {"seed": seed_draw(seed)} if rff else {}

    def prepare():
        return [("x", x), ("y", y)], ["x_weights", "y_weights"], [x_weights, y_weights]

    _, arrays, ws, metas, norms, spec, est, means = _mmd_setup(
        comm, prepare, kernel, bandwidth, gamma, coef0, degree, options, estimator, check)
    if est == "rff":
        return _mmd2_rff(comm, arrays, ws, spec, means, n_features, metas[0]["seed"], per_bandwidth)
    unbiased = est == "unbiased"
    (sx, nx), (sy, ny) = means
    c_self = [np.ascontiguousarray(sx / nx), np.ascontiguousarray(sy / ny)] if spec.uses_distance else [None, None]
    c_cross = [None, np.ascontiguousarray((sx + sy) / (nx + ny)) if spec.uses_distance else None]
    s_self, s_cross = _mmd_ring(comm, arrays, ws, metas, spec, unbiased, c_self, c_cross, per_bandwidth)
    dxx = self_divisor(nx, _sum_sq(norms[0]), unbiased, "x_weights")
    dyy = self_divisor(ny, _sum_sq(norms[1]), unbiased, "y_weights")
    dxy = cross_divisor(nx, ny, norms[0] is not None, norms[1] is not None)
    cols = slice(1, None) if per_bandwidth else 0  # each bandwidth alone, or the total
    value = assemble_mmd2(s_self[0, cols], s_self[1, cols], s_cross[1, cols], dxx, dyy, dxy)
    return value if per_bandwidth else float(value)


def mmd2_batch(
    x: Any,
    ys: Sequence[Any],
    *,
    group: Any = None,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    estimator: str | None = None,
    x_weights: Any = None,
    ys_weights: Sequence[Any] | None = None,
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
) -> np.ndarray:
    """MMD^2 between x and each of ys, every set given as one shard per rank.

    The distributed :func:`simgap.mmd2_batch`: the x-x sums are computed once,
    all sets travel the ring together (one message per step).  "median" is the
    median heuristic of x pooled with all of ys, as in the single version.
    CUDA shards under NCCL stay on the GPU, as in :func:`mmd2`.

    Parameters
    ----------
    x : array_like, shape (n_r, d)
    ys : sequence of array_like, each of shape (m_k_r, d)
        This rank's shard of each set; the same number of sets on every rank.
    group, kernel, bandwidth, estimator, gamma, coef0, degree
        As in :func:`mmd2`.
    x_weights : array_like, optional
    ys_weights : sequence of (array_like or None), optional

    Returns
    -------
    ndarray of float64, shape (len(ys),), the same on every rank.

    Examples
    --------
    >>> import simgap.distributed as sd
    >>> sd.mmd2_batch(x_local, [y1_local, y2_local])  # doctest: +SKIP
    """
    comm = Comm(group)
    n_sets = len(ys) if hasattr(ys, "__len__") and not isinstance(ys, str) else None
    options = ("mmd2_batch", n_sets, kernel, bandwidth, estimator, gamma, coef0, degree)

    def prepare():
        sets = ys
        if isinstance(sets, (np.ndarray, str)) or not isinstance(sets, Sequence):
            if getattr(sets, "ndim", 0) != 3:
                raise TypeError("ys must be a list or tuple of 2-D arrays (one per synthetic set)")
            sets = list(sets)
        if len(sets) == 0:
            raise ValueError("ys is empty; give at least one set")
        if ys_weights is not None and len(ys_weights) != len(sets):
            raise ValueError(f"ys_weights has {len(ys_weights)} entries but ys has {len(sets)}")
        named = [("x", x)] + [(f"ys[{k}]", y) for k, y in enumerate(sets)]
        wnames = ["x_weights"] + [f"ys_weights[{k}]" for k in range(len(sets))]
        wvals = [x_weights] + (list(ys_weights) if ys_weights is not None else [None] * len(sets))
        return named, wnames, wvals

    wnames, arrays, ws, metas, norms, spec, est, means = _mmd_setup(
        comm, prepare, kernel, bandwidth, gamma, coef0, degree, options, estimator,
        lambda spec, d: _check_distributed(estimator, ()))
    unbiased = est == "unbiased"
    n_sets = len(arrays) - 1
    if spec.uses_distance:
        c_self = [np.ascontiguousarray(s / c) for s, c in means]
        c_cross = [None] + [np.ascontiguousarray((means[0][0] + s) / (means[0][1] + c)) for s, c in means[1:]]
    else:
        c_self, c_cross = [None] * len(arrays), [None] * len(arrays)
    s_self, s_cross = _mmd_ring(comm, arrays, ws, metas, spec, unbiased, c_self, c_cross, False)
    nx = means[0][1]
    dxx = self_divisor(nx, _sum_sq(norms[0]), unbiased, "x_weights")
    out = np.empty(n_sets)
    for k in range(1, n_sets + 1):
        nk = means[k][1]
        dyy = self_divisor(nk, _sum_sq(norms[k]), unbiased, wnames[k])
        dxy = cross_divisor(nx, nk, norms[0] is not None, norms[k] is not None)
        out[k - 1] = assemble_mmd2(s_self[0, 0], s_self[k, 0], s_cross[k, 0], dxx, dyy, dxy)
    return out
