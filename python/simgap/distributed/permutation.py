"""The sharded permutation test: :func:`mmd_test` over the ring of :mod:`.ring`.

The pooled rows travel the ring with their labels for every relabelling,
bit-packed (:func:`_label_bits`); each pair of shards contributes its share of
1'K'1, a'K'1 and a'K'a for every column a of labels (:func:`_label_sums`),
from which the observed statistic and the null distribution are read off as
in :func:`simgap.mmd_test`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .._estimators import (
    EXACT_ESTIMATORS,
    TEST_MEMORY_BYTES,
    check_estimator,
    permutation_divisors,
    permutation_memory,
    permutation_p_value,
    permutation_statistics,
)
from .._ops import dispatch
from .._ops.inputs import check_memory, to_float64
from .._ops.spec import KernelSpec, values_log10_bound
from .._util.arrays import common_device, concat_rows, like, to_host
from .._util.checks import as_positive_int
from ..mmd import MMDTestResult
from .comm import Comm, agree, seed_draw, seed_option
from .mmd import kernel_precheck, median
from .ring import ring, ring_device, rows_half
from .shard import global_dtype, rows_per_rank, shard_inputs

__all__ = ["mmd_test"]

_DRAW_COLUMNS = 1024  # relabellings drawn, then bit-packed, at a time


def _test_setup(comm: Comm, x, y, n_permutations, kernel, bandwidth, estimator, gamma, coef0, degree, seed):
    """Check the shards and options on every rank and agree on dtype, kernel and seed.

    Returns this rank's shards in the global dtype (on the device for the
    device-resident ring), that dtype, the kernel (the global median bandwidth where
    asked), the estimator, the seed every rank uses, the rows of x and y on
    each rank and the centre of the pooled rows (None for kernels that do not
    use distances).
    """
    options = ("mmd_test", n_permutations, kernel, bandwidth, estimator, gamma, coef0, degree,
               seed_option(seed))

    def local():
        device = ring_device(comm, common_device(x=x, y=y))
        arrays, _, meta = shard_inputs([("x", x), ("y", y)], [("x_weights", None), ("y_weights", None)], device)
        P = as_positive_int(n_permutations, "n_permutations")
        rows = arrays[0].shape[0] + arrays[1].shape[0]
        # This rank's null array and a comparison mask, its bit-packed labels, one batch of relabellings.
        need = 9.0 * (P + 1) + rows * ((P + 1) / 8.0) + permutation_memory(max(rows, 1), 8, min(P, _DRAW_COLUMNS))
        check_memory(need, "n_permutations", P, "the null distribution and the relabellings")
        spec0, needs_median = kernel_precheck(kernel, bandwidth, gamma, coef0, degree, arrays[0].shape[1])
        meta["values_log10"] = values_log10_bound(spec0, arrays)
        meta["seed"] = seed_draw(seed)
        est = check_estimator(estimator, False, EXACT_ESTIMATORS)
        return (arrays, spec0, needs_median, est), meta

    (arrays, spec, needs_median, est), metas = agree(comm, local, options)
    seed_used = metas[0]["seed"]  # rank 0's draw when seed is None
    nxs, nys = rows_per_rank(metas, 0), rows_per_rank(metas, 1)
    n, m = int(nxs.sum()), int(nys.sum())
    if n == 0 or m == 0:
        raise ValueError(f"{'x' if n == 0 else 'y'} has 0 rows on every rank; at least one sample is needed")
    if est == "unbiased" and min(n, m) < 2:
        raise ValueError("x, y: the unbiased estimator needs at least 2 rows in each sample")
    dtype = global_dtype(metas)
    xa, ya = (to_float64(a) for a in arrays) if dtype == np.float64 else arrays
    if needs_median:
        spec = replace(spec, bandwidths=(median(comm, [xa, ya], metas),))
    center = None
    if spec.uses_distance:
        center = np.ascontiguousarray(sum(mt["colsum"][0] + mt["colsum"][1] for mt in metas) / (n + m))
    return xa, ya, dtype, spec, est, seed_used, nxs, nys, center


def _label_bits(nxs: np.ndarray, nys: np.ndarray, rank: int, n_cols: int, seed: int) -> np.ndarray:
    """The labels (1: x) of this rank's pooled rows, bit-packed: uint8, rows x ceil(n_cols / 8).

    Column 0 is the observed split; column c >= 1 the c-th relabelling, drawn
    from ``default_rng(seed)`` as :func:`simgap.mmd_test` draws it, over the
    global pooled rows (x shards in rank order, then y shards).  Every rank
    draws every relabelling and keeps the labels of its own rows.
    """
    n, m = int(nxs.sum()), int(nys.sum())
    N = n + m
    rows_x, rows = int(nxs[rank]), int(nxs[rank] + nys[rank])
    # This rank's rows in the pooled order.
    xoff = int(nxs[:rank].sum())
    yoff = n + int(nys[:rank].sum())
    gidx = np.concatenate([np.arange(xoff, xoff + rows_x), np.arange(yoff, yoff + int(nys[rank]))])
    bits = np.zeros((rows, (n_cols + 7) // 8), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    mask = np.zeros(N, dtype=bool)
    for c0 in range(0, n_cols, _DRAW_COLUMNS):
        c1 = min(n_cols, c0 + _DRAW_COLUMNS)
        block = np.zeros((rows, c1 - c0), dtype=bool)
        for c in range(c0, c1):
            if c == 0:
                block[:rows_x, 0] = True
            else:
                mask[:] = False
                mask[rng.permutation(N)[:n]] = True
                block[:, c - c0] = mask[gidx]
        bits[:, c0 // 8 : c0 // 8 + (c1 - c0 + 7) // 8] = np.packbits(block, axis=1)
    return bits


def _label_sums(comm: Comm, z: Any, bits: Any, spec: KernelSpec, center: np.ndarray | None, unbiased: bool,
                nxs: np.ndarray, nys: np.ndarray, n_cols: int, dtype: np.dtype) -> tuple[float, np.ndarray, np.ndarray]:
    """The global sums 1'K'1, a'K'1 and a'K'a (K' without its diagonal when
    unbiased) for every column a of labels, added over the pairs of shards of
    the ring in batches of columns; (float, (n_cols,), (n_cols,)).

    For a pair of shards (A, B) the rank evaluates C = K'(A, B) [1, L_B] once
    per batch of labels and reads off that block's (and its mirror's) share.
    """
    center = None if center is None else like(center, z)  # where the shards are
    rank, P = comm.rank, comm.world
    nbytes = (n_cols + 7) // 8
    itemsize = dtype.itemsize
    rows_max = max(int(nxs[q] + nys[q]) for q in range(P))
    per_col = max(1, rows_max) * (8 + 2 * itemsize)
    batch = max(8, (TEST_MEMORY_BYTES // per_col) // 8 * 8)
    T = np.zeros(1)
    as_ = np.zeros(n_cols)
    sxx = np.zeros(n_cols)

    def block_pair(zA, bA, zB, bB, diagonal):
        """Contributions of the kernel block K'(zA, zB) and, off the diagonal, its
        mirror, where the shards and their labels are."""
        if zA.shape[0] == 0 or zB.shape[0] == 0:
            return
        f = 1.0 if diagonal else 2.0
        s_part = None
        for c0 in range(0, n_cols, batch):
            c1 = min(n_cols, c0 + batch)
            first = s_part is None  # the first batch also contracts with ones: K' 1
            WB = dispatch.unpack_bits(bB, c0, c1, dtype, ones_column=first)
            out = dispatch.kernel_contract(zA, zA if diagonal else zB, WB, spec, center, diagonal,
                                           diagonal and unbiased, "highest")
            if first:
                s_part = out[:, 0] * 1.0  # a copy, in either library
                T[0] += f * float(s_part.sum())
                out = out[:, 1:]
            WA = dispatch.unpack_bits(bA, c0, c1, np.float64)
            as_[c0:c1] += to_host(WA.T @ s_part)
            if not diagonal:
                as_[c0:c1] += to_host(out.sum(0))  # the mirror block: a_B' K'(zB, zA) 1
            sxx[c0:c1] += f * to_host(dispatch.column_dots(WA, out))

    d = z.shape[1]

    def shapes_of(q):
        rows = int(nxs[q] + nys[q])
        return [((rows, d), dtype), ((rows, nbytes), np.dtype(np.uint8))]

    def visit(q, parts, half):
        if q == rank:
            block_pair(z, bits, z, bits, True)
            return
        zq, bq = parts
        if half is None:
            block_pair(z, bits, zq, bq, False)
        else:
            (zA, bA, zB, bB) = (z, bits, zq, bq) if rank < q else (zq, bq, z, bits)
            sl = rows_half(zA.shape[0], half)
            block_pair(zA[sl], bA[sl], zB, bB, False)

    ring(comm, [z, bits], shapes_of, visit)
    tot = comm.sum_ranks(np.concatenate([T, as_, sxx]))
    return float(tot[0]), tot[1 : 1 + n_cols], tot[1 + n_cols :]


def mmd_test(
    x: Any,
    y: Any,
    n_permutations: int = 1000,
    *,
    group: Any = None,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    estimator: str = "unbiased",
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    seed: Any = 0,
) -> MMDTestResult:
    r"""The permutation test of :func:`simgap.mmd_test` over sharded x and y.

    The relabellings are the single-process ones: every rank draws, with
    ``numpy.random.default_rng(seed)``, the same ``n_permutations``
    permutations of the pooled global rows (x shards in rank order, then y
    shards) and keeps the labels of its own rows.  The pooled rows travel half a
    ring with their labels bit-packed; for a pair of shards (A, B) the rank
    evaluates C = K'(A, B) [1, L_B] once per batch of relabellings and reads
    off that block's (and its mirror's) share of a'K'a, a'K'1 and 1'K'1, so each
    kernel block is evaluated once per batch on one rank.  The null
    distribution and p-value equal the single-process ones up to float64
    rounding (a tie between the observed statistic and a null value could in
    principle resolve differently).  CUDA shards under NCCL stay on the GPU,
    labels and contractions included (see :mod:`simgap.distributed`).

    Parameters
    ----------
    x : array_like, shape (n_r, d)
    y : array_like, shape (m_r, d)
    n_permutations : int, default 1000
    group : torch.distributed.ProcessGroup, optional
    kernel, bandwidth, estimator, gamma, coef0, degree, seed
        As in :func:`simgap.mmd_test`; options must be equal on every rank.

    Returns
    -------
    MMDTestResult, the same on every rank.

    Examples
    --------
    >>> import simgap.distributed as sd
    >>> sd.mmd_test(x_local, y_local, n_permutations=500).p_value  # doctest: +SKIP
    """
    comm = Comm(group)
    xa, ya, dtype, spec, est, seed_used, nxs, nys, center = _test_setup(
        comm, x, y, n_permutations, kernel, bandwidth, estimator, gamma, coef0, degree, seed)
    unbiased = est == "unbiased"
    n, m = int(nxs.sum()), int(nys.sum())
    n_cols = n_permutations + 1
    z = concat_rows(xa, ya)
    bits = like(_label_bits(nxs, nys, comm.rank, n_cols, seed_used), z)  # on the device with z
    total, as_g, sxx_g = _label_sums(comm, z, bits, spec, center, unbiased, nxs, nys, n_cols, dtype)
    values = permutation_statistics(sxx_g, as_g, total, *permutation_divisors(n, m, unbiased))
    observed = float(values[0])
    null = values[1:]
    p_value = permutation_p_value(observed, null, total, n + m)
    return MMDTestResult(observed, p_value, n_permutations, null, est, spec.name, spec.bandwidths)
