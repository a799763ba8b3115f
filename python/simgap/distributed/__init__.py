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

The package: :mod:`.shard` (which rows a rank handles, the checks of a rank's
shards), :mod:`.comm` (the process group's collectives and the agreement of
the ranks), :mod:`.ring` (every pair of shards visited once), and the
statistics over them: :mod:`.mmd` (``mmd2``, ``mmd2_batch``),
:mod:`.permutation` (``mmd_test``) and :mod:`.sliced`
(``sliced_wasserstein``).  ``merge_stores`` lives in :mod:`simgap.store`.
"""

from ..store import merge_stores
from .mmd import mmd2, mmd2_batch
from .permutation import mmd_test
from .shard import shard_indices, shard_range
from .sliced import sliced_wasserstein

__all__ = [
    "mmd2",
    "mmd2_batch",
    "mmd_test",
    "merge_stores",
    "shard_indices",
    "shard_range",
    "sliced_wasserstein",
]
