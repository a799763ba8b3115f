"""Sharded sliced Wasserstein distance: :func:`sliced_wasserstein`.

Each rank projects its shard on all the directions; the directions are split
between the ranks, one all-to-all gives each rank every point's projection on
its own directions, and the rank sorts them and computes the 1-D distances as
:func:`simgap.sliced_wasserstein` does.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .._ops import dispatch
from .._ops.inputs import as_projections, to_float64
from .._util.arrays import common_device, is_tensor, like, to_host
from .._util.checks import as_real
from ..sliced import random_projections
from .comm import Comm, agree, seed_draw, seed_option
from .ring import ring_device
from .shard import global_dtype, global_weights, rows_per_rank, shard_inputs, shard_range

__all__ = ["sliced_wasserstein"]

_SLICED_MEMORY_BYTES = 256 << 20  # projected values held per rank and round of directions


def _concat_columns(blocks: list) -> Any:
    """The blocks (each k x c_q) side by side, where they are."""
    if is_tensor(blocks[0]):
        import torch

        return torch.cat(blocks, dim=1)
    return np.concatenate(blocks, axis=1)


def _direction_rounds(comm, L: int, nxs, nys, per_value: int, own_round) -> np.ndarray:
    """W_p^p on every direction, in rounds of directions split across ranks.

    A round holds about _SLICED_MEMORY_BYTES of projected values per rank
    (per_value bytes per projected value sent, received and kept); within a
    round rank q owns the directions bounds[q].  ``own_round(g0, g1, bounds)``
    returns this rank's W_p^p on its directions (float64, length hi - lo);
    they are all-gathered after each round."""
    P, rank = comm.world, comm.rank
    n, m = int(nxs.sum()), int(nys.sum())
    rows_max = int(max(nxs.max(), nys.max()))
    per_direction = per_value * (rows_max + -(-max(n, m) // P))  # per set
    round_len = min(L, max(P, (_SLICED_MEMORY_BYTES // max(1, per_direction)) // P * P))
    result = np.zeros(L)
    for g0 in range(0, L, round_len):
        g1 = min(L, g0 + round_len)
        bounds = [tuple(g0 + t for t in shard_range(g1 - g0, q, P)) for q in range(P)]
        lo, hi = bounds[rank]
        result[lo:hi] = own_round(g0, g1, bounds)  # called on every rank: all send projections
        parts = comm.gather_rows(result[lo:hi], [qhi - qlo for qlo, qhi in bounds])
        result[g0:g1] = np.concatenate(parts)
    return result


def _project_rounds(comm, xa, ya, theta, center, nxs, nys, a, b, pp, dtype) -> np.ndarray:
    """W_p^p on every direction: each rank projects its centred shard
    (:func:`simgap._ops.dispatch.project`: the C++ linear kernel on the host,
    an IEEE GEMM on the device), one all-to-all of direction-major blocks per
    set and round (GPU to GPU under NCCL for device shards), then the sorts and
    1-D distances of the single-process function
    (:func:`simgap._ops.dispatch.wasserstein_rows`), where the shards are."""
    rank = comm.rank
    centred = [dispatch.centred(arr, like(center, arr), dtype) for arr in (xa, ya)]
    th = like(np.ascontiguousarray(theta.T, dtype=dtype), xa)  # L x d
    aw, bw = (None if w is None else like(w, xa) for w in (a, b))

    def own_round(g0, g1, bounds):
        lo, hi = bounds[rank]
        got = []
        for arr, counts in zip(centred, (nxs, nys)):
            rows = arr.shape[0]
            # Direction-major blocks, one per destination rank: (qhi - qlo) x rows each.
            send = dispatch.project(arr, th[g0:g1]).reshape(-1)
            recv = comm.all_to_all(send, [rows * (qhi - qlo) for qlo, qhi in bounds],
                                   [int(c) * (hi - lo) for c in counts])
            del send
            # From rank q: (hi - lo) x rows_q; every point in global order per direction.
            pos = np.concatenate([[0], np.cumsum(counts * (hi - lo))]).astype(int)
            blocks = [recv[pos[q] : pos[q + 1]].reshape(hi - lo, int(c)) for q, c in enumerate(counts)]
            got.append(_concat_columns(blocks))
            del recv, blocks
        if hi == lo:
            return np.zeros(0)
        return to_host(dispatch.wasserstein_rows(got[0], got[1], aw, bw, pp))

    # Sent, received, and (device) the sorted copy and CUB's buffer of the received values.
    per_value = dtype.itemsize * (3 if is_tensor(xa) else 1)
    return _direction_rounds(comm, theta.shape[1], nxs, nys, per_value, own_round)


def sliced_wasserstein(
    x: Any,
    y: Any,
    *,
    group: Any = None,
    n_projections: int = 256,
    p: float = 2,
    seed: Any = 0,
    projections: Any = None,
    x_weights: Any = None,
    y_weights: Any = None,
    return_per_projection: bool = False,
) -> float | tuple[float, np.ndarray]:
    r"""The sliced p-Wasserstein distance of :func:`simgap.sliced_wasserstein` over sharded x and y.

    Exact 1-D distances need, per direction, all the projected points: each
    rank projects its shard on all L directions (the same ones on every rank:
    ``seed`` or ``projections``), the directions are split into P contiguous
    groups, one all-to-all gives each rank every point's projection on its
    group, the rank sorts them and computes W_p^p as the single version does,
    and the L values are all-gathered.  Memory per rank
    O((n_r + m_r) L + (n + m) L / P); communication: see :mod:`simgap.distributed`.
    CUDA shards under NCCL stay on the GPU (projections, all-to-all, sorts).

    Parameters
    ----------
    x : array_like, shape (n_r, d)
    y : array_like, shape (m_r, d)
    group : torch.distributed.ProcessGroup, optional
    n_projections, p, seed, projections, return_per_projection
        As in :func:`simgap.sliced_wasserstein`; equal on every rank.
    x_weights, y_weights : array_like, shape (n_r,) / (m_r,), optional
        This rank's weights; normalised by the global total.

    Returns
    -------
    float, or (float, ndarray of shape (L,)); the same on every rank.

    Examples
    --------
    >>> import simgap.distributed as sd
    >>> sd.sliced_wasserstein(x_local, y_local, n_projections=128)  # doctest: +SKIP
    """
    comm = Comm(group)
    options = ("sliced_wasserstein", n_projections if projections is None else None, p,
               seed_option(seed) if projections is None else None, return_per_projection)
    # seed=None: rank 0's fresh draw, for every rank's directions (one small exchange on every call,
    # before anything can differ between the ranks).
    shared_draw = comm.objects(seed_draw(None) if seed is None else None)[0]

    def local():
        device = ring_device(comm, common_device(x=x, y=y, projections=projections))
        arrays, ws, meta = shard_inputs([("x", x), ("y", y)], [("x_weights", x_weights), ("y_weights", y_weights)],
                                         device)
        pp = as_real(p, "p")
        if pp < 1:
            raise ValueError(f"p must be >= 1, got {pp}")
        d = arrays[0].shape[1]
        if projections is None:
            theta = random_projections(d, n_projections, shared_draw if seed is None else seed_draw(seed))
        else:
            theta = as_projections(projections, d)
        meta["hash"] = hashlib.sha1(theta.tobytes() + repr(theta.shape).encode()).hexdigest()[:16]
        return (arrays, ws, theta, pp), meta

    (arrays, ws, theta, pp), metas = agree(comm, local, options)
    nxs, nys = rows_per_rank(metas, 0), rows_per_rank(metas, 1)
    n, m = int(nxs.sum()), int(nys.sum())
    if n == 0 or m == 0:
        raise ValueError(f"{'x' if n == 0 else 'y'} has 0 rows on every rank; at least one sample is needed")
    norms = [global_weights(metas, 0, "x_weights"), global_weights(metas, 1, "y_weights")]
    dtype = global_dtype(metas)
    xa, ya = (to_float64(a) for a in arrays) if dtype == np.float64 else arrays
    center = sum(mt["colsum"][0] + mt["colsum"][1] for mt in metas) / (n + m)

    # Global weights, in the global row order.
    def all_weights(k, w):
        if norms[k] is None:
            return None
        counts = rows_per_rank(metas, k)
        local = np.zeros(0) if w is None else w
        return np.ascontiguousarray(np.concatenate(comm.gather_rows(local, list(counts))) / norms[k][0])

    a, b = all_weights(0, ws[0]), all_weights(1, ws[1])
    out = _project_rounds(comm, xa, ya, theta, center, nxs, nys, a, b, pp, dtype)
    value = float(np.mean(out) ** (1.0 / pp))
    if return_per_projection:
        return value, out
    return value
