"""Exact statistics over data sharded across processes, with ``torch.distributed``.

Every rank passes its own shard of x and y (any sizes, empty included) and gets
back, on every rank, the value that the single-process function returns on the
concatenated data (x shards in rank order, then y shards in rank order).
Memory per rank is O(shard): no rank ever holds all the data.

The process group is the caller's: launch with ``torchrun`` and call
``torch.distributed.init_process_group("gloo")`` (CPU) or ``("nccl")`` (GPUs)
before calling these functions.  Where the data lives:

* CUDA shards under NCCL, each rank's shards on its current CUDA device
  (``torch.cuda.set_device(local_rank)``): the device-resident path.  Shards
  (and the test's packed labels) stay on the GPU, the ring's messages and the
  sliced all-to-all go GPU to GPU through NCCL, and the kernel sums,
  contractions, projections, sorts and 1-D distances run on the GPU (the CUDA
  kernels of the single-process functions, ``precision="highest"``).  The
  relabellings of ``mmd_test`` are drawn on the host, as on one process, and
  copied to the device once.
* Everything else (gloo; NumPy shards; CUDA shards on another device than
  NCCL's current one): the host path.
  CUDA shards are copied to the host once per call, the kernels are the CPU
  ones, and under NCCL only the messages are staged through the current CUDA
  device.

Each rank chooses for itself (the messages are the same bytes either way).
Importing this module does not import torch.

How the work is split, and what travels (P ranks, d features, itemsize bytes
per value; "each rank sends" is also what it receives, up to shard imbalance):

``mmd2``, ``mmd2_batch``
    The (n + m) x (n + m) grid of kernel blocks between shards is symmetric:
    block (r, q) equals block (q, r) transposed.  The shards move around a ring
    for floor(P / 2) steps; at step s rank r holds the shard of rank r - s and
    evaluates the blocks between the two (every block of the grid exactly once;
    at s = P / 2 for even P the two ranks of a pair split the rows).  Each rank
    sends floor(P / 2) shards: about floor(P / 2) / P * (n + m) * (d * itemsize
    (+ 8 with weights)) bytes, overlapped with the computation.  Plus a few
    small collectives: sizes and column sums (P * d * 8 bytes), the median
    subsample (at most 2000 rows, gathered), and the partial sums (P * 8 bytes
    per sum).
``mmd_test``
    The same ring over the pooled rows, each row carrying its labels for all
    n_permutations + 1 relabellings, bit-packed: floor(P / 2) / P * (n + m) *
    (d * itemsize + ceil((n_permutations + 1) / 8)) bytes per rank.  The
    relabellings are drawn on every rank from ``seed`` exactly as
    :func:`simgap.mmd_test` draws them (each rank keeps the labels of its own
    rows), so the null distribution is the same one, not just one with the
    same law.
``sliced_wasserstein``
    Each rank projects its shard on all L directions, then the directions are
    split: rank r owns about L / P of them and receives, with one all-to-all,
    the projected values of every point on its directions: each rank sends
    (n_r + m_r) * (L - L_r) * itemsize bytes, about (n + m) * L * itemsize *
    (P - 1) / P^2, and holds O((n_r + m_r) * L + (n + m) * L / P) values.
    With weights, the weights are all-gathered (8 (n + m) bytes).  The L
    distances are all-gathered at the end (8 L bytes).

Errors: every function first exchanges the shapes, dtypes and options of all
ranks.  A rank whose input is invalid makes every rank raise (``"rank k: ..."``),
and options that differ between ranks are an error on every rank.  With gloo a
monitored barrier opens each call, so a rank that never arrives is named after
the process group's timeout instead of leaving the others waiting forever.

Helpers for embedding a dataset across ranks: :func:`shard_range` and
:func:`shard_indices` (which rows a rank handles) and :func:`merge_stores`
(the per-rank embedding stores joined into one).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from . import _C
from ._util.arrays import is_tensor as _is_torch_tensor
from ._ops.backend import common_device  # common_device: mixed devices, no CUDA build needed
from ._ops.inputs import as_matrix, check_finite
from ._util.checks import as_positive_int, as_real
from .kernels import (
    _BANDWIDTH_KERNELS,
    KernelSpec,
    _bandwidth_values,
    _median_of,
    check_kernel,
    needs_float64_values,
    resolve_kernel,
    values_log10_bound,
)
from .mmd import _TEST_MEMORY_BYTES, MMDTestResult, _check_estimator, permutation_p_value
from .sliced import random_projections

__all__ = [
    "mmd2",
    "mmd2_batch",
    "mmd_test",
    "merge_stores",
    "shard_indices",
    "shard_range",
    "sliced_wasserstein",
]

_MEDIAN_MAX_POINTS = 2000  # the subsample of the single-process median heuristic
_MEDIAN_SEED = 0
_ALIGN = 8  # bytes: every part of a ring message starts on a float64 boundary
_IDENTITY_BLOCK = 32  # directions per call when reading 1-D distances off projected values

# Payload bytes this process sent / received in the last call (for the benchmarks).
_last_traffic: dict[str, int] = {"sent": 0, "received": 0}


# ----------------------------------------------------------------------------------- sharding
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


_STORE_INFO = ("model_class", "layer", "pooling")


def merge_stores(parts: Sequence[Any], out: Any, *, overwrite: bool = False, chunk_rows: int = 65536):
    """Join embedding stores written by several ranks into one store, in the given order.

    With the rows of a dataset split by :func:`shard_range`, each rank embeds
    its block into its own store; merging the stores in rank order gives the
    store of the whole dataset, rows in order.  Run it on one rank after a
    barrier.  Rows are copied ``chunk_rows`` at a time through a temporary
    file beside ``out`` (memory stays bounded; disk needs twice the result).

    Parameters
    ----------
    parts : sequence of str or os.PathLike
        The stores (folders) to join.  A rank with no rows writes no store:
        leave it out.
    out : str or os.PathLike
        The new store; it must not exist unless ``overwrite=True``.
    overwrite : bool, default False
    chunk_rows : int, default 65536

    Returns
    -------
    simgap.EmbeddingStore
        The merged store.  Its metadata columns are the parts' columns
        concatenated (every part must have the same columns, or none); the
        model fields of the manifest (model_class, layer, pooling) must agree.

    Examples
    --------
    >>> import numpy as np, os, tempfile, simgap
    >>> from simgap.distributed import merge_stores
    >>> root = tempfile.mkdtemp()
    >>> a = simgap.save_embeddings(os.path.join(root, "rank0"), np.zeros((2, 3)))
    >>> b = simgap.save_embeddings(os.path.join(root, "rank1"), np.ones((1, 3)))
    >>> merge_stores([a.path, b.path], os.path.join(root, "all")).shape
    (3, 3)
    """
    from .store import EmbeddingStore, save_embeddings

    if isinstance(parts, (str, Path)) or len(parts) == 0:
        raise ValueError("parts must be a non-empty list of store folders")
    stores = [EmbeddingStore(p) for p in parts]
    dims = {st.dim for st in stores}
    if len(dims) > 1:
        raise ValueError("the stores have different dimensions: " + ", ".join(
            f"{st.path}: {st.dim}" for st in stores))
    info = {k: stores[0].manifest.get(k) for k in _STORE_INFO}
    for st in stores[1:]:
        other = {k: st.manifest.get(k) for k in _STORE_INFO}
        if other != info:
            raise ValueError(f"the stores come from different models: {stores[0].path}: {info}; {st.path}: {other}")
    metas = [st.metadata for st in stores]
    metadata = None
    if any(mt is not None for mt in metas):
        keys = [None if mt is None else sorted(mt) for mt in metas]
        if any(k != keys[0] for k in keys):
            raise ValueError("the stores have different metadata columns: " + ", ".join(
                f"{st.path}: {k}" for st, k in zip(stores, keys)))
        metadata = {k: np.concatenate([mt[k] for mt in metas]) for k in keys[0]}
    total, dim = sum(st.count for st in stores), dims.pop()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".merge-") as tmp:
        rows = np.lib.format.open_memmap(Path(tmp) / "rows.npy", mode="w+", dtype=np.float32, shape=(total, dim))
        pos = 0
        for st in stores:
            for start in range(0, st.count, chunk_rows):
                block = np.asarray(st.embeddings[start : start + chunk_rows])
                rows[pos : pos + block.shape[0]] = block
                pos += block.shape[0]
        rows.flush()
        merged = save_embeddings(out, rows, metadata=metadata, overwrite=overwrite, info=info,
                                 chunk_rows=chunk_rows)
        del rows
    return merged


# ------------------------------------------------------------------------------ communication
def _dist():
    import torch.distributed as dist

    return dist


class _Comm:
    """The process group, the transport device and the few collectives used here."""

    def __init__(self, group: Any) -> None:
        import torch

        dist = _dist()
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "torch.distributed is not initialised: call torch.distributed.init_process_group "
                "(for example under torchrun) before the functions of simgap.distributed"
            )
        self.torch, self.dist, self.group = torch, dist, group
        self.rank = dist.get_rank(group)
        if self.rank < 0:
            raise RuntimeError("this process is not a member of the given process group")
        self.world = dist.get_world_size(group)
        backend = str(dist.get_backend(group)).lower()
        self.device = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
        _last_traffic["sent"] = _last_traffic["received"] = 0
        if backend == "gloo" and self.world > 1:
            # Its default timeout is torch's 30 minutes, not the group's: pass the group's.
            dist.monitored_barrier(group=group, timeout=self._timeout(), wait_all_ranks=True)

    def _timeout(self):
        """The timeout the group was created with (None: torch's default)."""
        try:
            pg = self.group if self.group is not None else self.dist.group.WORLD
            return pg._get_backend(self.torch.device("cpu")).options._timeout
        except Exception:  # private API: without it the barrier uses torch's default
            return None

    def _peer(self, r: int) -> int:
        r %= self.world
        if self.group is None:
            return r
        return self.dist.get_global_rank(self.group, r)

    def _count(self, sent: int, received: int) -> None:
        _last_traffic["sent"] += int(sent)
        _last_traffic["received"] += int(received)

    def _tensor(self, arr: np.ndarray):
        t = self.torch.from_numpy(np.require(arr, requirements=["C", "W"]))
        return t if self.device.type == "cpu" else t.to(self.device)

    def objects(self, obj: Any) -> list:
        out: list = [None] * self.world
        self.dist.all_gather_object(out, obj, group=self.group)
        return out

    def gather_rows(self, local: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
        """All-gather 2-D (or 1-D) arrays whose row counts are known to every rank."""
        width = local.shape[1:]
        top = max(1, max(counts))
        buf = np.zeros((top,) + width, dtype=local.dtype)
        buf[: local.shape[0]] = local
        send = self._tensor(buf)
        outs = [self.torch.empty_like(send) for _ in range(self.world)]
        self.dist.all_gather(outs, send, group=self.group)
        self._count(buf.nbytes * (self.world - 1), buf.nbytes * (self.world - 1))
        return [o.cpu().numpy()[:c] for o, c in zip(outs, counts)]

    def sum_ranks(self, vec: np.ndarray) -> np.ndarray:
        """The sum over ranks of a float64 vector, added in rank order (the same bits everywhere)."""
        parts = self.gather_rows(np.asarray(vec, dtype=np.float64).reshape(1, -1), [1] * self.world)
        total = np.zeros(vec.shape[0] if vec.ndim else 1)
        for p in parts:
            total = total + p[0]
        return total

    def shift(self, buf: Any, recv_nbytes: int) -> "_Pending":
        """Send buf to rank + 1 and receive recv_nbytes bytes from rank - 1 (both never empty).

        buf is a uint8 NumPy array, or a uint8 torch tensor already on the
        transport device (the device-resident ring), which is then what the
        receive gives back."""
        if _is_torch_tensor(buf):
            st = buf
            rt, recv = self.torch.empty(recv_nbytes, dtype=self.torch.uint8, device=buf.device), None
        else:
            recv = np.empty(recv_nbytes, dtype=np.uint8)
            st, rt = self._tensor(buf), self._tensor(recv)
        ops = [self.dist.P2POp(self.dist.isend, st, self._peer(self.rank + 1), self.group),
               self.dist.P2POp(self.dist.irecv, rt, self._peer(self.rank - 1), self.group)]
        works = self.dist.batch_isend_irecv(ops)
        self._count(buf.nbytes, recv_nbytes)
        return _Pending(works, st, rt, recv)

    def all_to_all(self, send: np.ndarray, send_counts: list[int], recv_counts: list[int]) -> np.ndarray:
        """1-D all-to-all with uneven splits (counts in elements)."""
        recv = np.empty(sum(recv_counts), dtype=send.dtype)
        st, rt = self._tensor(send), self._tensor(recv)
        self.dist.all_to_all_single(rt, st, recv_counts, send_counts, group=self.group)
        own = send_counts[self.rank] * send.itemsize
        self._count(send.nbytes - own, recv.nbytes - own)
        return recv if self.device.type == "cpu" else rt.cpu().numpy()


class _Pending:
    def __init__(self, works, send_t, recv_t, recv_np):
        self.works, self.send_t, self.recv_t, self.recv_np = works, send_t, recv_t, recv_np

    def wait(self) -> Any:
        for w in self.works:
            w.wait()
        if self.recv_np is None:  # the device-resident ring keeps the tensor
            return self.recv_t
        if self.recv_t.device.type != "cpu":
            return self.recv_t.cpu().numpy()
        return self.recv_np


def _canonical(value: Any) -> Any:
    """``value`` with arrays and NumPy scalars as exact Python values, so that
    repr() tells every difference (an array's repr rounds to 8 digits)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, tuple(value.ravel().tolist()))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_canonical(v) for v in value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _agree(comm: _Comm, fn: Callable[[], tuple[Any, dict]], options: Any) -> tuple[Any, list[dict]]:
    """Run the local validation fn on every rank and exchange its summary.

    fn returns (local data, summary dict).  If any rank raised, every rank
    raises: the failing rank its own exception, the others one of the same
    kind naming that rank.  Options that differ between ranks are an error.
    """
    try:
        local, meta = fn()
        err = None
    except Exception as exc:  # every rank must learn about it: no early raise
        local, meta, err = None, {}, exc
    meta = dict(meta, error=None if err is None else (type(err).__name__, str(err)),
                options=repr(_canonical(options)))
    metas = comm.objects(meta)
    for k, mt in enumerate(metas):
        if mt["error"] is not None:
            if err is not None:
                raise err
            kind = {"ValueError": ValueError, "TypeError": TypeError,
                    "NotImplementedError": NotImplementedError}.get(mt["error"][0], RuntimeError)
            raise kind(f"rank {k}: {mt['error'][0]}: {mt['error'][1]}")
    if len({mt["options"] for mt in metas}) > 1:
        listing = "; ".join(f"rank {k}: {mt['options']}" for k, mt in enumerate(metas))
        raise ValueError(f"the ranks were called with different options ({listing}); pass the same ones on every rank")
    for key in ("d", "hash"):
        values = [mt[key] for mt in metas if key in mt]
        if len(set(values)) > 1:
            what = "number of features" if key == "d" else "projections"
            raise ValueError(f"the ranks disagree on the {what}: " + ", ".join(
                f"rank {k}: {mt[key]}" for k, mt in enumerate(metas)))
    return local, metas


def _seed_option(seed: Any) -> str:
    """How a seed takes part in the options every rank must agree on."""
    if seed is None:
        return "None"
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return repr(int(seed))
    return f"<{type(seed).__name__}>"


def _seed_draw(seed: Any, name: str = "seed") -> int:
    """This rank's integer seed: ``seed`` itself, or a fresh draw for None (every
    rank then uses rank 0's draw: all must draw the same relabellings or
    directions).  Generators cannot be shared between processes."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer or None in simgap.distributed (every rank "
                         f"draws the same random numbers from it); got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------------- validation
def _as_shard(x: Any, name: str) -> np.ndarray:
    """As :func:`simgap._ops.inputs.as_matrix`, but a shard may have 0 rows (shape (0, d)).

    A CUDA tensor is copied to the host once (the host ring's kernels run on CPU memory).
    """
    if _is_torch_tensor(x) and x.device.type != "cpu":
        x = x.detach().cpu()
    shape = getattr(x, "shape", None)
    if shape is None and isinstance(x, (list, tuple)):
        shape = np.shape(x)
    if shape is not None and len(shape) == 2 and shape[0] == 0:
        if shape[1] == 0:
            raise ValueError(f"{name} has 0 columns; at least one feature is needed")
        probe = x.new_zeros((1, shape[1])) if _is_torch_tensor(x) else np.zeros((1, shape[1]), np.asarray(x).dtype)
        return np.empty((0, shape[1]), dtype=as_matrix(probe, name).dtype)
    return as_matrix(x, name)


def _ring_device(comm: _Comm, device: str) -> Any:
    """The CUDA device on which this rank keeps its shards and runs its kernels
    (every function of this module), or None for the host path.

    That is the shards' device when they are CUDA tensors, the group's backend
    is NCCL (the messages then go GPU to GPU) and its current device is that
    one, with a simgap build that has the CUDA module.  Otherwise CUDA shards
    are copied to the host once per call.  Each rank decides for itself: the
    messages are the same bytes either way."""
    from ._ops import backend as _backend

    if not device.startswith("cuda") or comm.device.type != "cuda" or _backend._cuda is None:
        return None
    return comm.device if str(comm.device) == device else None


def _as_device_shard(x: Any, name: str) -> Any:
    """A CUDA tensor shard checked on its device as :func:`_as_shard` checks host
    shards (0 rows allowed): floating point (half precision and integers are
    widened, as on the host), 2-D, finite, contiguous."""
    from ._ops import cuda as _cuda_ops

    return _cuda_ops.as_cuda_matrix(x, name, allow_empty=True)


def _shard_weights(w: Any, n: int, name: str) -> np.ndarray | None:
    """Raw (unnormalised) non-negative float64 weights of a shard; the total is global."""
    if w is None:
        return None
    if _is_torch_tensor(w):
        w = w.detach().cpu().numpy()
    arr = np.asarray(w)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with one weight per local row ({n}); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative; found {arr.min()}")
    return np.ascontiguousarray(arr)


def _kernel_precheck(kernel, bandwidth, gamma, coef0, degree, d) -> tuple[KernelSpec, bool]:
    """Validate the kernel options locally; True when the median must be computed globally."""
    name = check_kernel(kernel)
    needs_median = name in _BANDWIDTH_KERNELS and _bandwidth_values(bandwidth, name) is None
    spec = resolve_kernel(kernel, 1.0 if needs_median else bandwidth, gamma, coef0, degree, [np.empty((0, d))])
    return spec, needs_median


def _global_dtype(metas: list[dict]) -> np.dtype:
    """float64 if any rank has a float64 shard (empty ones included) or the
    polynomial kernel's values on some rank's rows would overflow float32 tiles
    (ValueError, on every rank, where they overflow float64), else float32."""
    log10 = max(mt.get("values_log10", 0.0) for mt in metas)
    wide = needs_float64_values(log10) or any(mt["itemsize"] == 8 for mt in metas)
    return np.dtype(np.float64) if wide else np.dtype(np.float32)


def _counts(metas: list[dict], k: int) -> np.ndarray:
    return np.array([mt["rows"][k] for mt in metas], dtype=np.int64)


def _host_rows(a: Any, idx: np.ndarray) -> np.ndarray:
    """Rows idx of a host array or device tensor, as a NumPy array."""
    if _is_torch_tensor(a):
        import torch

        return a[torch.as_tensor(idx, dtype=torch.int64, device=a.device)].cpu().numpy()
    return a[idx]


def _median(comm: _Comm, sets: list[Any], metas: list[dict]) -> float:
    """The median heuristic of the pooled sets, computed as the single-process one.

    The same seeded subsample of at most 2000 global row indices is drawn on
    every rank; each rank contributes its rows of it, gathered in global order.
    """
    counts = [_counts(metas, k) for k in range(len(sets))]
    totals = [int(c.sum()) for c in counts]
    total = sum(totals)
    if total < 2:
        return 1.0
    if total > _MEDIAN_MAX_POINTS:
        idx = np.sort(np.random.default_rng(_MEDIAN_SEED).choice(total, size=_MEDIAN_MAX_POINTS, replace=False))
    else:
        idx = np.arange(total)
    set_start = np.cumsum([0] + totals)
    # chosen[k][r]: local row indices of set k on rank r
    chosen = []
    for k, c in enumerate(counts):
        starts = set_start[k] + np.concatenate([[0], np.cumsum(c)])
        chosen.append([idx[(idx >= starts[r]) & (idx < starts[r + 1])] - starts[r] for r in range(comm.world)])
    d = sets[0].shape[1]
    mine = [np.asarray(_host_rows(s, chosen[k][comm.rank]), dtype=np.float64) for k, s in enumerate(sets)]
    local = np.concatenate(mine, axis=0) if mine else np.empty((0, d))
    per_rank = [sum(len(chosen[k][r]) for k in range(len(sets))) for r in range(comm.world)]
    got = comm.gather_rows(local.reshape(-1, d), per_rank)
    parts = []
    for k in range(len(sets)):
        for r in range(comm.world):
            before = sum(len(chosen[j][r]) for j in range(k))
            parts.append(got[r][before : before + len(chosen[k][r])])
    z = np.concatenate(parts, axis=0)
    return _median_of([z], _MEDIAN_MAX_POINTS, _MEDIAN_SEED)


# ------------------------------------------------------------------------------------ the ring
def _layout(shapes: list[tuple[tuple[int, ...], np.dtype]]) -> tuple[list[int], int]:
    offsets, pos = [], 0
    for shape, dt in shapes:
        offsets.append(pos)
        pos += -(-int(np.prod(shape, dtype=np.int64)) * dt.itemsize // _ALIGN) * _ALIGN
    return offsets, max(pos, _ALIGN)


def _np_dtype(dt: Any) -> np.dtype:
    """The NumPy dtype of a NumPy or torch dtype (the ring's layouts are in NumPy dtypes)."""
    return np.dtype(str(dt).replace("torch.", ""))


def _pack(parts: list[Any]) -> Any:
    offsets, size = _layout([(tuple(p.shape), _np_dtype(p.dtype)) for p in parts])
    if parts and _is_torch_tensor(parts[0]):  # the device-resident ring: one buffer on the device
        import torch

        buf = torch.zeros(size, dtype=torch.uint8, device=parts[0].device)
        for off, p in zip(offsets, parts):
            nb = p.numel() * p.element_size()
            if nb:
                buf[off : off + nb] = p.contiguous().reshape(-1).view(torch.uint8)
        return buf
    buf = np.zeros(size, dtype=np.uint8)
    for off, p in zip(offsets, parts):
        buf[off : off + p.nbytes] = np.ascontiguousarray(p).reshape(-1).view(np.uint8)
    return buf


def _unpack(buf: Any, shapes: list[tuple[tuple[int, ...], np.dtype]]) -> list[Any]:
    offsets, _ = _layout(shapes)
    on_device = _is_torch_tensor(buf)
    if on_device:
        import torch
    out = []
    for off, (shape, dt) in zip(offsets, shapes):
        nb = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        part = buf[off : off + nb]  # every part starts 8-byte aligned: views of the buffer
        out.append((part.view(getattr(torch, dt.name)) if on_device else part.view(dt)).reshape(shape))
    return out


def _ring(comm: _Comm, parts: list[np.ndarray], shapes_of: Callable[[int], list], visit: Callable) -> None:
    """Visit every unordered pair of shards once (a half ring).

    ``visit(q, parts_q, half)`` is called on rank r with q = r (the diagonal, half
    None) and then with the shard of rank r - s for s = 1 .. floor(P / 2).  For
    even P, at s = P / 2 both ranks of a pair hold each other's shard and
    ``half`` is 0 on the lower rank and 1 on the upper one: each evaluates half
    of the rows of the lower rank's shard.  The next shard is in flight while
    a shard is being used.
    """
    P, r = comm.world, comm.rank
    steps = P // 2
    own = _pack(parts) if steps else None
    pending = comm.shift(own, _layout(shapes_of((r - 1) % P))[1]) if steps else None
    visit(r, parts, None)
    for s in range(1, steps + 1):
        buf = pending.wait()
        q = (r - s) % P
        if s < steps:
            pending = comm.shift(buf, _layout(shapes_of((r - s - 1) % P))[1])
        half = None if 2 * s != P else (0 if r < q else 1)
        visit(q, _unpack(buf, shapes_of(q)), half)


def _rows_half(n: int, half: int | None) -> slice:
    if half is None:
        return slice(0, n)
    return slice(0, n // 2) if half == 0 else slice(n // 2, n)


# ----------------------------------------------------------------------------------------- MMD
def _shard_inputs(named: list[tuple[str, Any]], weights: list[tuple[str, Any]], device: Any = None):
    """Validate the shards of several sets (same features) and their raw weights
    (NumPy on the host, or CUDA tensors kept on ``device``; weights on the host)."""
    if device is not None:
        arrays = [_as_device_shard(v, name) for name, v in named]
    else:
        arrays = [_as_shard(v, name) for name, v in named]
    d = arrays[0].shape[1]
    for (name, _), a in zip(named[1:], arrays[1:]):
        if a.shape[1] != d:
            raise ValueError(f"{named[0][0]} has {d} columns but {name} has {a.shape[1]}; "
                             "both must have the same number of features")
    ws = [_shard_weights(w, a.shape[0], wname) for (wname, w), a in zip(weights, arrays)]
    if device is not None:
        import torch

        colsum = [a.sum(dim=0, dtype=torch.float64).cpu().numpy() for a in arrays]
        itemsize = max(a.element_size() for a in arrays)
    else:
        for a, (name, _) in zip(arrays, named):
            check_finite(a, name)
        colsum = [a.sum(axis=0, dtype=np.float64) for a in arrays]
        itemsize = max(a.itemsize for a in arrays)
    meta = {
        "rows": [a.shape[0] for a in arrays],
        "d": d,
        "itemsize": itemsize,
        "colsum": colsum,
        "wsum": [None if w is None else float(w.sum()) for w in ws],
        "wsq": [None if w is None else float(np.dot(w, w)) for w in ws],
    }
    return arrays, ws, meta


def _global_weights(metas: list[dict], k: int, name: str) -> tuple[float, float] | None:
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


def _mmd_setup(comm, prepare, kernel, bandwidth, gamma, coef0, degree, options, estimator, extra_check):
    """Shared preamble of mmd2 / mmd2_batch: validation, agreement, dtype, weights, kernel.

    prepare() returns (named sets, weight names, weight values); it runs inside the
    agreement so that a bad argument on one rank is reported on every rank.
    """
    allowed = ("unbiased", "exact", "biased", "block", "linear", "rff")

    def local():
        named, wnames, wvals = prepare()
        device = _ring_device(comm, common_device(**{n: v for n, v in named}))
        arrays, ws, meta = _shard_inputs(named, list(zip(wnames, wvals)), device)
        spec0, needs_median = _kernel_precheck(kernel, bandwidth, gamma, coef0, degree, arrays[0].shape[1])
        meta["values_log10"] = values_log10_bound(spec0, arrays)
        _check_estimator(estimator, any(w is not None for w in ws), allowed)
        extra_check(spec0)
        return (named, wnames, arrays, ws, spec0, needs_median), meta

    (named, wnames, arrays, ws, spec0, needs_median), metas = _agree(comm, local, options)
    # From here on every decision depends only on what all ranks have seen: no rank can diverge.
    norms = [_global_weights(metas, k, wnames[k]) for k in range(len(arrays))]
    est = _check_estimator(estimator, any(nm is not None for nm in norms), allowed)
    unbiased = est == "unbiased"
    for k, (name, _) in enumerate(named):
        total = int(_counts(metas, k).sum())
        if total == 0:
            raise ValueError(f"{name} has 0 rows on every rank; at least one sample is needed")
        if unbiased and total < 2:
            raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    dtype = _global_dtype(metas)
    on_device = _is_torch_tensor(arrays[0])
    if on_device:
        import torch

        arrays = [a.to(getattr(torch, dtype.name)) for a in arrays]
    else:
        arrays = [a.astype(dtype) if a.dtype != dtype else a for a in arrays]
    # Weights normalised by the global total; a weighted set gets zeros(0) on ranks with no rows of it.
    ws = [None if nm is None else np.ascontiguousarray((np.zeros(0) if w is None else w) / nm[0])
          for w, nm in zip(ws, norms)]
    if on_device:
        ws = [None if w is None else torch.from_numpy(w).to(arrays[0].device) for w in ws]
    spec = spec0
    if needs_median:
        spec = replace(spec0, bandwidths=(_median(comm, arrays, metas),))
    means = [(sum(mt["colsum"][k] for mt in metas), int(_counts(metas, k).sum())) for k in range(len(arrays))]
    return wnames, arrays, ws, metas, norms, spec, unbiased, means


def _mmd_ring(comm, arrays, ws, metas, spec, unbiased, centers_self, centers_cross, per_scale):
    """Global sums: self[k] = sum over pairs of set k, cross[k] = sum over set 0 x set k.

    Each is a float64 vector (total, then per bandwidth if per_scale).
    """
    K = len(arrays)
    width = 1 + (len(spec.bandwidths) if per_scale else 0)
    args = spec.args()
    acc_self = np.zeros((K, width))
    acc_cross = np.zeros((K, width))
    dtype = _np_dtype(arrays[0].dtype)
    d = arrays[0].shape[1]
    weighted = [w is not None for w in ws]

    on_device = _is_torch_tensor(arrays[0])
    if on_device:  # the device-resident ring: shards, messages and kernel sums on the GPU
        import torch

        from ._ops import cuda as _cuda_ops
        from .mmd import _single

        specs = [_single(spec, s) for s in spec.bandwidths] if per_scale else spec

        def on_dev(c):
            return None if c is None else torch.from_numpy(np.ascontiguousarray(c, dtype=np.float64)).to(arrays[0].device)

        centers_self, centers_cross = [on_dev(c) for c in centers_self], [on_dev(c) for c in centers_cross]

        def ones(t):
            return torch.ones(t.shape[0], dtype=torch.float64, device=t.device)

    def ksum(A, B, a, b, center, diagonal):
        if A.shape[0] == 0 or B.shape[0] == 0:
            return np.zeros(width)
        if on_device:
            # The gaussian kernel of several bandwidths is the sum of the single ones.
            a = ones(A) if a is None else a
            if diagonal:
                v = _cuda_ops.weighted_self_sum(A, a, specs, center, unbiased, "highest")
            else:
                b = ones(B) if b is None else b
                out = _cuda_ops.contract(A, B, b.reshape(-1, 1), specs, center, False, False, "highest")
                v = (np.array([float(a @ o[:, 0]) for o in out]) if per_scale else float(a @ out[:, 0]))
            return np.concatenate([[float(np.sum(v))], v]) if per_scale else np.array([float(v)])
        ps = np.zeros(width - 1) if per_scale else None
        if diagonal:
            s = _C.kernel_sum(A, A, a, a, *args, center, True, unbiased, True, ps)
        else:
            s = _C.kernel_sum(A, B, a, b, *args, center, False, False, False, ps)
        return np.concatenate([[s], ps]) if per_scale else np.array([s])

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
            sl = [_rows_half(A[k].shape[0], half) for k in range(K)]

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
    _ring(comm, parts, shapes_of, visit)
    total = comm.sum_ranks(np.concatenate([acc_self.ravel(), acc_cross.ravel()]))
    return total[: K * width].reshape(K, width), total[K * width :].reshape(K, width)


def _self_divisor(n: int, norm: tuple[float, float] | None, unbiased: bool, name: str) -> float:
    if norm is None:
        return n * (n - 1.0) if unbiased else n * float(n)
    if not unbiased:
        return 1.0
    div = 1.0 - norm[1]
    if div <= 1e-12:
        raise ValueError(f"{name}: the unbiased estimator needs positive weight on at least two samples")
    return div


def _cross_divisor(n: int, m: int, na, nb) -> float:
    return (n if na is None else 1.0) * (m if nb is None else 1.0)


def _check_exact(estimator: Any) -> None:
    est = estimator.lower() if isinstance(estimator, str) else estimator
    if est in ("block", "linear", "rff"):
        raise NotImplementedError(
            f"simgap.distributed computes the exact estimators only ('unbiased', 'biased'); "
            f"estimator={estimator!r} is not distributed yet (run simgap.mmd2 on one rank's shard instead)"
        )


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
) -> Any:
    r"""Exact MMD^2 between x and y, each given as one shard per rank.

    Every rank calls ``mmd2(x_local, y_local)`` with its own rows; every rank
    returns the value of :func:`simgap.mmd2` on ``x = concat(x shards in rank
    order)``, ``y = concat(y shards)`` with the same options (the U- or
    V-statistic, weighted or not; equal up to the order of float64 additions).

    Each block of kernel evaluations between two shards is computed once, on
    one rank, with the shards passed around half a ring (floor(P / 2) steps,
    the next shard in flight during the computation); memory per rank is three
    shards.  Communication: see :mod:`simgap.distributed`.

    Parameters
    ----------
    x : array_like, shape (n_r, d)
        This rank's rows of x: NumPy array or torch tensor; may have 0 rows.
        CUDA tensors under NCCL stay on the GPU (see :mod:`simgap.distributed`).
    y : array_like, shape (m_r, d)
        This rank's rows of y.
    group : torch.distributed.ProcessGroup, optional
        The group of ranks that hold the shards (default: the default group).
    kernel, bandwidth, estimator, gamma, coef0, degree, per_bandwidth
        As in :func:`simgap.mmd2`; "median" is the single-process median
        heuristic of x and y pooled (same seeded subsample of 2000 rows,
        gathered).  Only the exact estimators ("unbiased" / "exact",
        "biased") are distributed.  Options must be equal on every rank.
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
    comm = _Comm(group)
    options = ("mmd2", kernel, bandwidth, estimator, gamma, coef0, degree, per_bandwidth)

    def check(spec):
        _check_exact(estimator)
        if per_bandwidth and spec.name != "gaussian":
            raise ValueError(f"per_bandwidth: only the gaussian kernel takes several bandwidths, not {spec.name}")

    def prepare():
        return [("x", x), ("y", y)], ["x_weights", "y_weights"], [x_weights, y_weights]

    _, arrays, ws, metas, norms, spec, unbiased, means = _mmd_setup(
        comm, prepare, kernel, bandwidth, gamma, coef0, degree, options, estimator, check)
    (sx, nx), (sy, ny) = means
    c_self = [np.ascontiguousarray(sx / nx), np.ascontiguousarray(sy / ny)] if spec.uses_distance else [None, None]
    c_cross = [None, np.ascontiguousarray((sx + sy) / (nx + ny)) if spec.uses_distance else None]
    s_self, s_cross = _mmd_ring(comm, arrays, ws, metas, spec, unbiased, c_self, c_cross, per_bandwidth)
    dxx = _self_divisor(nx, norms[0], unbiased, "x_weights")
    dyy = _self_divisor(ny, norms[1], unbiased, "y_weights")
    dxy = _cross_divisor(nx, ny, norms[0], norms[1])
    if per_bandwidth:
        return s_self[0, 1:] / dxx + s_self[1, 1:] / dyy - 2.0 * (s_cross[1, 1:] / dxy)
    return float(s_self[0, 0] / dxx + s_self[1, 0] / dyy - 2.0 * (s_cross[1, 0] / dxy))


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
    comm = _Comm(group)
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

    wnames, arrays, ws, metas, norms, spec, unbiased, means = _mmd_setup(
        comm, prepare, kernel, bandwidth, gamma, coef0, degree, options, estimator,
        lambda spec: _check_exact(estimator))
    n_sets = len(arrays) - 1
    if spec.uses_distance:
        c_self = [np.ascontiguousarray(s / c) for s, c in means]
        c_cross = [None] + [np.ascontiguousarray((means[0][0] + s) / (means[0][1] + c)) for s, c in means[1:]]
    else:
        c_self, c_cross = [None] * len(arrays), [None] * len(arrays)
    s_self, s_cross = _mmd_ring(comm, arrays, ws, metas, spec, unbiased, c_self, c_cross, False)
    nx = means[0][1]
    kxx = s_self[0, 0] / _self_divisor(nx, norms[0], unbiased, "x_weights")
    out = np.empty(n_sets)
    for k in range(1, n_sets + 1):
        nk = means[k][1]
        kyy = s_self[k, 0] / _self_divisor(nk, norms[k], unbiased, wnames[k])
        out[k - 1] = kxx + kyy - 2.0 * (s_cross[k, 0] / _cross_divisor(nx, nk, norms[0], norms[k]))
    return out


# ------------------------------------------------------------------------------ permutation test
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
    comm = _Comm(group)
    options = ("mmd_test", n_permutations, kernel, bandwidth, estimator, gamma, coef0, degree,
               _seed_option(seed))

    def local():
        device = _ring_device(comm, common_device(x=x, y=y))
        arrays, _, meta = _shard_inputs([("x", x), ("y", y)], [("x_weights", None), ("y_weights", None)], device)
        as_positive_int(n_permutations, "n_permutations")
        spec0, needs_median = _kernel_precheck(kernel, bandwidth, gamma, coef0, degree, arrays[0].shape[1])
        meta["values_log10"] = values_log10_bound(spec0, arrays)
        meta["seed"] = _seed_draw(seed)
        est = _check_estimator(estimator, False, ("unbiased", "exact", "biased"))
        return (arrays, spec0, needs_median, est), meta

    (arrays, spec, needs_median, est), metas = _agree(comm, local, options)
    seed_used = metas[0]["seed"]  # rank 0's draw when seed is None
    unbiased = est == "unbiased"
    nxs, nys = _counts(metas, 0), _counts(metas, 1)
    n, m = int(nxs.sum()), int(nys.sum())
    if n == 0 or m == 0:
        raise ValueError(f"{'x' if n == 0 else 'y'} has 0 rows on every rank; at least one sample is needed")
    if unbiased and min(n, m) < 2:
        raise ValueError("x, y: the unbiased estimator needs at least 2 rows in each sample")
    dtype = _global_dtype(metas)
    on_device = _is_torch_tensor(arrays[0])  # the device-resident ring (CUDA shards under NCCL)
    if on_device:
        import torch

        from ._ops import cuda as _cuda_ops

        xa, ya = (a.to(getattr(torch, dtype.name)) for a in arrays)
    else:
        xa, ya = (a.astype(dtype) if a.dtype != dtype else a for a in arrays)
    if needs_median:
        spec = replace(spec, bandwidths=(_median(comm, [xa, ya], metas),))
    N = n + m
    center = None
    if spec.uses_distance:
        center = np.ascontiguousarray(sum(mt["colsum"][0] + mt["colsum"][1] for mt in metas) / N)
    if on_device:
        z = torch.cat([xa, ya], dim=0)
        center_t = None if center is None else torch.from_numpy(center).to(z.device)
    else:
        z = np.concatenate([xa, ya], axis=0)
    rank, P = comm.rank, comm.world
    n_cols = n_permutations + 1
    nbytes = (n_cols + 7) // 8

    # This rank's rows in the pooled order, and their labels for every relabelling.
    xoff = int(nxs[:rank].sum())
    yoff = n + int(nys[:rank].sum())
    gidx = np.concatenate([np.arange(xoff, xoff + xa.shape[0]), np.arange(yoff, yoff + ya.shape[0])])
    bits = np.zeros((z.shape[0], nbytes), dtype=np.uint8)
    rng = np.random.default_rng(seed_used)
    mask = np.zeros(N, dtype=bool)
    gen_cols = 1024
    for c0 in range(0, n_cols, gen_cols):
        c1 = min(n_cols, c0 + gen_cols)
        block = np.zeros((z.shape[0], c1 - c0), dtype=bool)
        for c in range(c0, c1):
            if c == 0:
                block[: xa.shape[0], 0] = True
            else:
                mask[:] = False
                mask[rng.permutation(N)[:n]] = True
                block[:, c - c0] = mask[gidx]
        bits[:, c0 // 8 : c0 // 8 + (c1 - c0 + 7) // 8] = np.packbits(block, axis=1)

    if on_device:
        bits = torch.from_numpy(bits).to(z.device)
    itemsize = dtype.itemsize
    rows_max = max(int(nxs[q] + nys[q]) for q in range(P))
    per_col = max(1, rows_max) * (8 + 2 * itemsize)
    batch = max(8, (_TEST_MEMORY_BYTES // per_col) // 8 * 8)
    args = spec.args()
    T = np.zeros(1)
    as_ = np.zeros(n_cols)
    sxx = np.zeros(n_cols)

    def labels(b, c0, c1):
        if on_device:  # np.unpackbits on the device: the first label in the high bit
            sub = b[:, c0 // 8 : (c1 + 7) // 8]
            shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=b.device)
            sub = ((sub[:, :, None] >> shifts) & 1).reshape(b.shape[0], -1)
            return sub[:, c0 % 8 : c0 % 8 + (c1 - c0)]
        sub = np.unpackbits(b[:, c0 // 8 : (c1 + 7) // 8], axis=1, count=c1 - c0 + (c0 % 8))
        return sub[:, c0 % 8 :]

    def block_pair_device(zA, bA, zB, bB, diagonal):
        """block_pair with the shards, labels and contractions on the device."""
        f = 1.0 if diagonal else 2.0
        tdt = getattr(torch, dtype.name)
        s_part = None
        for c0 in range(0, n_cols, batch):
            c1 = min(n_cols, c0 + batch)
            WB = labels(bB, c0, c1).to(tdt)
            if s_part is None:
                WB = torch.cat([torch.ones((zB.shape[0], 1), dtype=tdt, device=WB.device), WB], dim=1)
            out = _cuda_ops.contract(zA, zA if diagonal else zB, WB.contiguous(), spec, center_t, diagonal,
                                     diagonal and unbiased, "highest")
            if s_part is None:
                s_part = out[:, 0].clone()
                T[0] += f * float(s_part.sum())
                out = out[:, 1:]
            WA = labels(bA, c0, c1).to(torch.float64)
            as_[c0:c1] += (WA.t() @ s_part).cpu().numpy()
            if not diagonal:
                as_[c0:c1] += out.sum(dim=0).cpu().numpy()  # the mirror block: a_B' K'(zB, zA) 1
            sxx[c0:c1] += f * (WA * out).sum(dim=0).cpu().numpy()

    def block_pair(zA, bA, zB, bB, diagonal):
        """Contributions of the kernel block K'(zA, zB) and, off the diagonal, its mirror."""
        if zA.shape[0] == 0 or zB.shape[0] == 0:
            return
        if on_device:
            return block_pair_device(zA, bA, zB, bB, diagonal)
        f = 1.0 if diagonal else 2.0
        s_part = None
        for c0 in range(0, n_cols, batch):
            c1 = min(n_cols, c0 + batch)
            WB = labels(bB, c0, c1).astype(dtype)
            if s_part is None:
                WB = np.concatenate([np.ones((zB.shape[0], 1), dtype=dtype), WB], axis=1)
            out = np.zeros((zA.shape[0], WB.shape[1]))
            _C.kernel_contract(zA, zB if not diagonal else zA, np.ascontiguousarray(WB), out, *args,
                               center, diagonal, diagonal and unbiased)
            if s_part is None:
                s_part = out[:, 0].copy()
                T[0] += f * s_part.sum()
                out = out[:, 1:]
            WA = labels(bA, c0, c1).astype(np.float64)
            as_[c0:c1] += WA.T @ s_part
            if not diagonal:
                as_[c0:c1] += out.sum(axis=0)  # the mirror block: a_B' K'(zB, zA) 1
            sxx[c0:c1] += f * np.einsum("ij,ij->j", WA, out)

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
            sl = _rows_half(zA.shape[0], half)
            block_pair(zA[sl], bA[sl], zB, bB, False)

    _ring(comm, [z, bits], shapes_of, visit)
    tot = comm.sum_ranks(np.concatenate([T, as_, sxx]))
    total, as_g, sxx_g = float(tot[0]), tot[1 : 1 + n_cols], tot[1 + n_cols :]
    if unbiased:
        dxx, dyy, dxy = n * (n - 1.0), m * (m - 1.0), n * float(m)
    else:
        dxx, dyy, dxy = n * float(n), m * float(m), n * float(m)
    sxy = as_g - sxx_g
    syy = total - 2.0 * as_g + sxx_g
    values = sxx_g / dxx + syy / dyy - 2.0 * sxy / dxy
    observed = float(values[0])
    null = values[1:]
    p_value = permutation_p_value(observed, null, total, n + m)
    return MMDTestResult(observed, p_value, n_permutations, null, est, spec.name, spec.bandwidths)


# --------------------------------------------------------------------------- sliced Wasserstein
_SLICED_MEMORY_BYTES = 256 << 20  # projected values held per rank and round of directions


def _w1d(u: np.ndarray, v: np.ndarray, a, b, p: float, out: np.ndarray) -> None:
    """W_p^p of each column pair (u[:, l], v[:, l]) of already projected values.

    The values go through the C++ sort and merge of the single-process
    function: they are fed as points in R^k projected on the k identity
    directions, which reproduces them exactly.  k = 32: a call has a fixed cost
    per point (packing), so one direction per call would be several times slower;
    the k x k identity products cost little more than reading the values, and the
    C++ sorts the k directions of a call in parallel.
    """
    L = u.shape[1]
    k = _IDENTITY_BLOCK
    for l0 in range(0, L, k):
        l1 = min(L, l0 + k)
        _C.sliced_wasserstein(u[:, l0:l1], v[:, l0:l1], np.eye(l1 - l0), a, b, p, None, out[l0:l1])


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
    """W_p^p on every direction (host): each rank projects its centred shard
    with the C++ kernels, one all-to-all of point-major blocks per set and
    round, then sorts and 1-D distances as the single-process function."""
    rank = comm.rank
    linear = resolve_kernel("linear", "median", None, 1.0, 1, [np.empty((0, 1))])
    centred = []
    for arr in (xa, ya):
        out = np.empty(arr.shape, dtype=dtype)
        step = max(1, (1 << 22) // max(1, arr.shape[1]))
        for r0 in range(0, arr.shape[0], step):
            out[r0 : r0 + step] = (arr[r0 : r0 + step].astype(np.float64) - center).astype(dtype)
        centred.append(out)

    def own_round(g0, g1, bounds):
        lo, hi = bounds[rank]
        got = []
        for arr, counts in zip(centred, (nxs, nys)):
            rows = arr.shape[0]
            # Point-major blocks, one per destination rank, projected in place.
            send = np.empty(rows * (g1 - g0), dtype=dtype)
            pos = 0
            for qlo, qhi in bounds:
                block = send[pos : pos + rows * (qhi - qlo)].reshape(rows, qhi - qlo)
                if block.size:
                    thetaT = np.ascontiguousarray(theta[:, qlo:qhi].T.astype(dtype))
                    _C.kernel_matrix(arr, thetaT, block, *linear.args(), None, False)
                pos += block.size
            recv = comm.all_to_all(send, [rows * (qhi - qlo) for qlo, qhi in bounds],
                                   [int(c) * (hi - lo) for c in counts])
            got.append(recv.reshape(int(counts.sum()), hi - lo))  # every point, in global order
            del send
        out = np.zeros(hi - lo)
        if hi > lo:
            _w1d(got[0], got[1], a, b, pp, out)
        return out

    return _direction_rounds(comm, theta.shape[1], nxs, nys, dtype.itemsize, own_round)


def _project_rounds_device(comm, xa, ya, theta, center, nxs, nys, a, b, pp, dtype) -> np.ndarray:
    """_project_rounds with the shards on the device: projections by GEMM (IEEE
    fp32 or fp64) of the centred rows, one all-to-all of direction-major
    blocks per set and round (GPU to GPU under NCCL), sorts and 1-D distances
    on the device (_cuda_ops.wasserstein_rows)."""
    import torch

    from ._ops import cuda as _cuda_ops

    rank = comm.rank
    dev = xa.device
    tdt = getattr(torch, dtype.name)
    c = torch.from_numpy(np.ascontiguousarray(center, dtype=np.float64)).to(dev)
    centred = [_cuda_ops.centred(arr.to(tdt), c, tdt) for arr in (xa, ya)]
    th = torch.from_numpy(np.ascontiguousarray(theta.T)).to(dev).to(tdt)  # L x d
    aw = None if a is None else torch.from_numpy(a).to(dev)
    bw = None if b is None else torch.from_numpy(b).to(dev)

    def own_round(g0, g1, bounds):
        lo, hi = bounds[rank]
        got = []
        for arr, counts in zip(centred, (nxs, nys)):
            rows = arr.shape[0]
            # Direction-major blocks, one per destination rank.
            with _cuda_ops.fp32_matmul("ieee"):
                send = torch.mm(th[g0:g1], arr.t()).reshape(-1)  # (g1 - g0) x rows
            recv = torch.empty(int(counts.sum()) * (hi - lo), dtype=tdt, device=dev)
            comm.dist.all_to_all_single(recv, send, [int(c) * (hi - lo) for c in counts],
                                        [rows * (qhi - qlo) for qlo, qhi in bounds], group=comm.group)
            own = rows * (hi - lo) * dtype.itemsize
            comm._count(send.numel() * dtype.itemsize - own, recv.numel() * dtype.itemsize - own)
            del send
            # From rank q: (hi - lo) x rows_q; every point in global order per direction.
            blocks, pos = [], 0
            for cnt in counts:
                blocks.append(recv[pos : pos + int(cnt) * (hi - lo)].reshape(hi - lo, int(cnt)))
                pos += int(cnt) * (hi - lo)
            got.append(torch.cat(blocks, dim=1))
            del recv, blocks
        out = torch.zeros(hi - lo, dtype=torch.float64, device=dev)
        if hi > lo:
            _cuda_ops.wasserstein_rows(got[0], got[1], aw, bw, pp, out)
        return out.cpu().numpy()

    # Sent, received, and the sorted copy and CUB's buffer of the received values.
    return _direction_rounds(comm, theta.shape[1], nxs, nys, 3 * dtype.itemsize, own_round)


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
    comm = _Comm(group)
    options = ("sliced_wasserstein", n_projections if projections is None else None, p,
               _seed_option(seed) if projections is None else None, return_per_projection)
    # seed=None: rank 0's fresh draw, for every rank's directions (one small exchange on every call,
    # before anything can differ between the ranks).
    shared_draw = comm.objects(_seed_draw(None) if seed is None else None)[0]

    def local():
        device = _ring_device(comm, common_device(x=x, y=y, projections=projections))
        arrays, ws, meta = _shard_inputs([("x", x), ("y", y)], [("x_weights", x_weights), ("y_weights", y_weights)],
                                         device)
        pp = as_real(p, "p")
        if pp < 1:
            raise ValueError(f"p must be >= 1, got {pp}")
        d = arrays[0].shape[1]
        if projections is None:
            theta = random_projections(d, n_projections, shared_draw if seed is None else _seed_draw(seed))
        else:
            th = projections.detach().cpu().numpy() if _is_torch_tensor(projections) else projections
            theta = np.asarray(th)
            if theta.dtype.kind not in "biuf":
                raise TypeError(f"projections must be real numbers, got dtype {theta.dtype}")
            if theta.ndim != 2 or theta.shape[0] != d or theta.shape[1] == 0:
                raise ValueError(f"projections must have shape (d, L) = ({d}, L >= 1) to match x; got {theta.shape}")
            theta = np.ascontiguousarray(theta, dtype=np.float64)
            check_finite(theta, "projections")
        meta["hash"] = hashlib.sha1(theta.tobytes() + repr(theta.shape).encode()).hexdigest()[:16]
        return (arrays, ws, theta, pp), meta

    (arrays, ws, theta, pp), metas = _agree(comm, local, options)
    nxs, nys = _counts(metas, 0), _counts(metas, 1)
    n, m = int(nxs.sum()), int(nys.sum())
    if n == 0 or m == 0:
        raise ValueError(f"{'x' if n == 0 else 'y'} has 0 rows on every rank; at least one sample is needed")
    norms = [_global_weights(metas, 0, "x_weights"), _global_weights(metas, 1, "y_weights")]
    dtype = _global_dtype(metas)
    on_device = _is_torch_tensor(arrays[0])
    if not on_device:
        xa, ya = (a.astype(dtype) if a.dtype != dtype else a for a in arrays)
    else:
        xa, ya = arrays
    center = sum(mt["colsum"][0] + mt["colsum"][1] for mt in metas) / (n + m)

    # Global weights, in the global row order.
    def all_weights(k, w):
        if norms[k] is None:
            return None
        counts = _counts(metas, k)
        local = np.zeros(0) if w is None else w
        return np.ascontiguousarray(np.concatenate(comm.gather_rows(local, list(counts))) / norms[k][0])

    a, b = all_weights(0, ws[0]), all_weights(1, ws[1])
    rounds = _project_rounds_device if on_device else _project_rounds
    out = rounds(comm, xa, ya, theta, center, nxs, nys, a, b, pp, dtype)
    value = float(np.mean(out) ** (1.0 / pp))
    if return_per_projection:
        return value, out
    return value
