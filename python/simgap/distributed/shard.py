"""Which rows a rank handles, and the checks of a rank's shards.

:func:`shard_range` and :func:`shard_indices` split a dataset's rows over the
ranks.  :func:`shard_inputs` checks this rank's shards of several sets (on the
host, or CUDA tensors on their device) and summarises them for the agreement
of :func:`simgap.distributed.comm.agree`; :func:`global_dtype`,
:func:`rows_per_rank` and :func:`global_weights` read the global facts off
every rank's summary.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._ops import dispatch
from .._ops.inputs import as_matrix, as_weights, check_same_features
from .._ops.spec import needs_float64_values
from .._util.arrays import is_tensor
from .._util.checks import as_positive_int
from .ring import np_dtype

__all__ = ["as_shard", "global_dtype", "global_weights", "rows_per_rank", "shard_indices", "shard_inputs",
           "shard_range"]


def shard_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [start, stop) of rank ``rank`` when n rows are split over ``world`` ranks.

    Contiguous and balanced: the first ``n % world`` ranks get one row more.
    Every row belongs to exactly one rank (none twice, none lost, no padding);
    concatenating the shards in rank order gives the rows back in order.

    Examples
    --------
    >>> from simgap.distributed import shard_range
    >>> [shard_range(10, r, 3) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    n = as_positive_int(n, "n", minimum=0)
    world = as_positive_int(world, "world")
    rank = as_positive_int(rank, "rank", minimum=0)
    if rank >= world:
        raise ValueError(f"rank must be < world ({world}), got {rank}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard_indices(n: int, rank: int, world: int, *, strided: bool = False) -> np.ndarray:
    """Indices of the rows of a dataset of n rows that rank ``rank`` handles.

    Parameters
    ----------
    n : int
        Rows in the dataset.
    rank, world : int
        This process's rank and the number of ranks.
    strided : bool, default False
        False: the contiguous block of :func:`shard_range` (writing the shards
        one after the other in rank order restores the dataset's order).
        True: ``rank, rank + world, ...``, the order of
        ``torch.utils.data.DistributedSampler(shuffle=False)`` but without its
        padding (it repeats samples to even out the shards; here no sample is
        used twice, so shards differ by at most one row).

    Returns
    -------
    ndarray of int64

    Examples
    --------
    >>> from simgap.distributed import shard_indices
    >>> shard_indices(7, 1, 3)
    array([3, 4])
    >>> shard_indices(7, 1, 3, strided=True)
    array([1, 4])
    """
    if strided:
        shard_range(n, rank, world)  # validates
        return np.arange(rank, n, world, dtype=np.int64)
    start, stop = shard_range(n, rank, world)
    return np.arange(start, stop, dtype=np.int64)


def as_shard(x: Any, name: str, on_device: bool = False) -> Any:
    """A shard checked as :func:`simgap._ops.inputs.as_matrix` checks inputs,
    but with 0 rows allowed (shape (0, d)).

    On the host (NumPy) unless ``on_device``: a CUDA tensor is then copied to
    the host once (the host ring's kernels run on CPU memory).  ``on_device``:
    the tensor is checked on its device and stays there (the device-resident
    ring of :func:`simgap.distributed.ring.ring_device`).
    """
    if on_device:
        return as_matrix(x, name, allow_empty=True)
    if is_tensor(x):
        x = x.detach().cpu()
    return as_matrix(x, name, device="cpu", allow_empty=True)


def shard_inputs(named: list[tuple[str, Any]], weights: list[tuple[str, Any]], device: Any = None):
    """Validate the shards of several sets (same features) and their raw weights
    (NumPy on the host, or CUDA tensors kept on ``device``; weights, not
    normalised (their total is global), on the host)."""
    arrays = [as_shard(v, name, on_device=device is not None) for name, v in named]
    for (name, _), a in zip(named[1:], arrays[1:]):
        check_same_features(arrays[0], a, named[0][0], name)
    ws = [as_weights(w, a.shape[0], wname, normalise=False) for (wname, w), a in zip(weights, arrays)]
    meta = {
        "rows": [a.shape[0] for a in arrays],
        "d": arrays[0].shape[1],
        "itemsize": max(np_dtype(a.dtype).itemsize for a in arrays),
        "colsum": [dispatch.column_sums(a) for a in arrays],
        "wsum": [None if w is None else float(w.sum()) for w in ws],
        "wsq": [None if w is None else float(np.dot(w, w)) for w in ws],
    }
    return arrays, ws, meta


def global_dtype(metas: list[dict]) -> np.dtype:
    """float64 if any rank has a float64 shard (empty ones included) or the
    polynomial kernel's values on some rank's rows would overflow float32 tiles
    (ValueError, on every rank, where they overflow float64), else float32."""
    log10 = max(mt.get("values_log10", 0.0) for mt in metas)
    wide = needs_float64_values(log10) or any(mt["itemsize"] == 8 for mt in metas)
    return np.dtype(np.float64) if wide else np.dtype(np.float32)


def rows_per_rank(metas: list[dict], k: int) -> np.ndarray:
    """The rows of set k on each rank (int64, in rank order)."""
    return np.array([mt["rows"][k] for mt in metas], dtype=np.int64)


def global_weights(metas: list[dict], k: int, name: str) -> tuple[float, float] | None:
    """(total, sum of squares of the normalised weights) of set k, or None if unweighted."""
    flags = [mt["wsum"][k] is not None for mt in metas if mt["rows"][k]]
    if not any(flags):
        return None
    if not all(flags):
        raise ValueError(f"{name}: give weights on every rank that has rows, or on none")
    total = sum(mt["wsum"][k] or 0.0 for mt in metas)
    if not math.isfinite(total):
        raise ValueError(f"{name}: the weights' sum overflows float64; scale them down")
    if not total > 0:
        raise ValueError(f"{name} are all zero; at least one weight must be positive")
    return total, sum(mt["wsq"][k] or 0.0 for mt in metas) / (total * total)
