"""``compare(group=...)``: sharded data.  MMD^2, its permutation p-value and the
sliced Wasserstein distance are exact over all ranks' rows
(:mod:`simgap.distributed`); everything else runs on rank 0 on a seeded
subsample gathered from the shards (the same global rows whatever the sharding),
and every rank gets rank 0's report."""

from __future__ import annotations

import builtins
import sys
from typing import Any

import numpy as np

from .._ops.inputs import as_pair, cast, check_same_features
from .._util.arrays import common_device, is_tensor, take_rows, to_host
from .._util.checks import as_positive_int
from ..distributed import mmd_test as sharded_mmd_test
from ..distributed import sliced_wasserstein as sharded_sliced_wasserstein
from ..distributed.comm import Comm, canonical
from ..distributed.ring import ring_device
from ..distributed.shard import as_shard
from ..kernels import median_bandwidth
from ..report import GapReport
from .core import ShardedGap, compare_local
from .inputs import label_pair, metadata_params, pair_arg, params_frame, seeds, store_parts, subsample

__all__ = ["compare_sharded"]


def compare_sharded(real: Any, synthetic: Any, group: Any, options: dict) -> GapReport:
    """compare() over shards: exact MMD^2, p-value and SWD; the rest on a gathered subsample."""
    use, grp = _resolve_group(group)
    if not use:
        return compare_local(real, synthetic, **options)
    comm = Comm(grp)
    opts = dict(options)
    (xa, ya, rid, sid, rlab, slab, pdf, dev), infos, draw = _exchange(comm, real, synthetic, opts)
    dtype = np.result_type(*[np.dtype(i[2]) for i in infos], *[np.dtype(i[3]) for i in infos])
    xa, ya = _cast_rows(xa, dtype), _cast_rows(ya, dtype)
    nrs = np.array([i[0][0] for i in infos])
    mrs = np.array([i[1][0] for i in infos])
    n, m = int(nrs.sum()), int(mrs.sum())
    k = as_positive_int(opts["k"], "k")
    for rows, name in ((n, "real"), (m, "synthetic")):
        if rows <= k:
            raise ValueError(f"{name} has {rows} rows over all ranks; compare() with k={k} needs more than k")
    n_permutations = as_positive_int(opts["n_permutations"], "n_permutations")
    max_exact = as_positive_int(opts["max_exact"], "max_exact", minimum=2 * (k + 1))
    seed = opts["seed"] if opts["seed"] is not None else draw  # the same on every rank
    s = seeds(seed, 12)

    # The same global rows whatever the sharding: drawn from the seed and the global sizes.
    rx, ry = subsample(n, max_exact, s[0]), subsample(m, max_exact, s[1])
    offsets = (int(nrs[: comm.rank].sum()), int(mrs[: comm.rank].sum()))
    X, Y, ids, labels, params = _gather_subsample(comm, (xa, ya, rid, sid, rlab, slab, pdf), offsets, rx, ry)

    # The bandwidth as the single-process compare() takes it: the median heuristic
    # of the subsample (the same global rows), with the same seed.
    # Rank 0's value on every rank (BLAS threads could round differently elsewhere).
    sigma = comm.objects(median_bandwidth(X, Y, seed=s[2]))[0]
    # The headline statistics, exact over all rows (x shards in rank order, then y
    # shards); CUDA shards stay on the GPU (dev) for them.
    test = sharded_mmd_test(xa, ya, n_permutations, group=grp, bandwidth=sigma, seed=s[3])
    swd = sharded_sliced_wasserstein(xa, ya, group=grp, seed=s[6])

    approximations = []
    if n > max_exact or m > max_exact:
        approximations.append(
            f"distributed over {comm.world} ranks: MMD^2, its p-value and the sliced Wasserstein distance are exact "
            f"on all {n} real and {m} synthetic rows; everything else (interval, Frechet distance, prdc, C2ST, "
            f"clusters, per-class, parameters, directions, map) uses a random subsample of {len(rx)} real and "
            f"{len(ry)} synthetic rows (max_exact={max_exact}) gathered to every rank; synthetic_scores and "
            f"real_coverage cover only that subsample"
        )
    sharded = ShardedGap(sigma=float(test.bandwidth[0]), test=test, swd=float(swd), rows=(rx, ry), n=n, m=m,
                         approximations=approximations)
    opts.update(params=params, labels=labels, ids=ids, seed=seed)
    return _rank0_report(comm, X, Y, dev, sharded, opts, options["seed"])


# ----------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------


def _resolve_group(group: Any):
    """(use_distributed, the group to pass to simgap.distributed) for compare's ``group``."""
    if isinstance(group, str):
        if group != "auto":
            raise ValueError(f"group must be a torch.distributed ProcessGroup, 'auto' or None; got {group!r}")
        dist = sys.modules.get("torch.distributed")
        if dist is None or not dist.is_available() or not dist.is_initialized():
            return False, None
        return True, None  # the default group
    return True, group


def _local_shard(comm: Comm, real: Any, synthetic: Any, opts: dict):
    """This rank's shards and side data, checked locally:
    (real rows, synthetic rows, real ids, synthetic ids, real labels,
    synthetic labels, params frame, the GPU the shards stay on or None)."""
    real_src, _ = store_parts(real)
    syn_src, syn_meta = store_parts(synthetic)
    dev = _shard_device(comm, real_src, syn_src)
    if dev is not None:  # checked on the GPU; only the subsample's rows reach the host
        xa, ya = as_pair(real_src, syn_src, "real", "synthetic", allow_empty=True)
    else:  # a rank may hold no rows of a set
        xa, ya = as_shard(real_src, "real"), as_shard(syn_src, "synthetic")
        check_same_features(xa, ya, "real", "synthetic")
    nr, mr = xa.shape[0], ya.shape[0]
    params, ids = metadata_params(opts["params"], opts["ids"], syn_meta)
    rid, sid = pair_arg(ids, nr, mr, "ids")
    rlab, slab = label_pair(opts["labels"], nr, mr)
    pdf = params_frame(params, mr)
    as_positive_int(opts["k"], "k")
    as_positive_int(opts["n_permutations"], "n_permutations")
    as_positive_int(opts["max_exact"], "max_exact", minimum=2 * (opts["k"] + 1))
    seeds(opts["seed"], 1)
    return xa, ya, rid, sid, rlab, slab, pdf, dev


def _exchange(comm: Comm, real: Any, synthetic: Any, opts: dict):
    """This rank's checked shard; every rank then learns every rank's outcome,
    and raises when a rank failed, the options differ or the shards disagree.

    Returns (this rank's shard, every rank's summary, rank 0's seed draw).
    """
    try:
        parts, err = _local_shard(comm, real, synthetic, opts), None
    except Exception as exc:  # raised on every rank below
        parts, err = None, (type(exc).__name__, str(exc))
    draw = int(np.random.SeedSequence().generate_state(1)[0])
    # Every option but the per-rank data must be the same on every rank.
    same_options = repr(canonical({k: v for k, v in sorted(opts.items()) if k not in ("params", "labels", "ids")}))
    info = None if parts is None else (tuple(parts[0].shape), tuple(parts[1].shape),
                                       _dtype_str(parts[0]), _dtype_str(parts[1]),
                                       parts[2] is not None, parts[3] is not None, parts[4] is not None,
                                       parts[6] is not None)
    shared = comm.objects((err, info, draw, same_options))
    _raise_remote([e for e, _, _, _ in shared])
    if len({o for _, _, _, o in shared}) > 1:
        raise ValueError("compare(group=...): the ranks were called with different options ("
                         + "; ".join(f"rank {r}: {o}" for r, (_, _, _, o) in enumerate(shared))
                         + "); pass the same ones on every rank")
    infos = [i for _, i, _, _ in shared]
    dims = {i[0][1] for i in infos} | {i[1][1] for i in infos}
    if len(dims) > 1:
        raise ValueError(f"real and synthetic have different numbers of features on different ranks: {sorted(dims)}")
    for j, what in ((4, "real ids"), (5, "synthetic ids"), (6, "labels"), (7, "params")):
        if len({i[j] for i in infos}) > 1:
            raise ValueError(f"{what} are given on some ranks and not on others")
    return parts, infos, shared[0][2]


def _gather_subsample(comm: Comm, shard: tuple, offsets: tuple[int, int], rx: np.ndarray, ry: np.ndarray):
    """The global subsample rows ``rx``, ``ry`` of every rank's shard, gathered
    to every rank in rank order: (real rows, synthetic rows, ids, labels, params);
    ids default to global row numbers."""
    xa, ya, rid, sid, rlab, slab, pdf = shard
    x0, y0 = offsets
    lx = rx[(rx >= x0) & (rx < x0 + xa.shape[0])] - x0
    ly = ry[(ry >= y0) & (ry < y0 + ya.shape[0])] - y0
    mine = (
        np.ascontiguousarray(to_host(take_rows(xa, lx))), np.ascontiguousarray(to_host(take_rows(ya, ly))),
        (lx + x0) if rid is None else rid[lx], (ly + y0) if sid is None else sid[ly],
        None if rlab is None else rlab[lx], None if slab is None else slab[ly],
        None if pdf is None else pdf.iloc[ly].reset_index(drop=True),
    )
    got = comm.objects(mine)

    def cat(j):
        vals = [g[j] for g in got]
        return None if vals[0] is None else np.concatenate(vals)

    X, Y = np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])
    ids = (cat(2), cat(3))
    labels = None if got[0][4] is None else (cat(4), cat(5))
    params = None
    if got[0][6] is not None:
        import pandas as pd

        params = pd.concat([g[6] for g in got], ignore_index=True)
    return X, Y, ids, labels, params


def _rank0_report(comm: Comm, X: np.ndarray, Y: np.ndarray, dev: Any, sharded: ShardedGap, opts: dict,
                  seed_option: Any) -> GapReport:
    """Rank 0 computes the report on the gathered subsample (on its GPU when its
    shards are there); every rank gets it, or raises its error."""
    payload = None
    if comm.rank == 0:
        try:
            if dev is not None:
                X, Y = _to_device(X, dev), _to_device(Y, dev)
            report = compare_local(X, Y, sharded=sharded, **opts)
            report.settings["seed"] = seed_option
            report.settings["world_size"] = comm.world
            payload = (report, None)
        except Exception as exc:  # every rank raises it
            payload = (None, (type(exc).__name__, str(exc)))
    box = [payload]
    # broadcast_object_list names the source by its global rank.
    src = 0 if comm.group is None else comm.dist.get_global_rank(comm.group, 0)
    comm.dist.broadcast_object_list(box, src=src, group=comm.group)
    report, err = box[0]
    _raise_remote([err])
    return report


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _shard_device(comm: Comm, real: Any, synthetic: Any) -> Any:
    """The GPU on which compare(group=...) keeps this rank's shards: the device of
    simgap.distributed's device-resident ring (CUDA shards on the NCCL group's
    current device, a build with CUDA), else None (host copies)."""
    if not (is_tensor(real) and is_tensor(synthetic)):
        return None
    return ring_device(comm, common_device(real=real, synthetic=synthetic))


def _dtype_str(a: Any) -> str:
    """The NumPy dtype string of an array or a (float) tensor: "<f4" or "<f8"."""
    if is_tensor(a):
        return np.dtype(str(a.dtype).rpartition(".")[2]).str
    return a.dtype.str


def _cast_rows(a: Any, dtype: np.dtype) -> Any:
    """``a`` in ``dtype`` (float32 or float64), where it is."""
    if not is_tensor(a):
        return cast(a, dtype)
    import torch

    return a.to(torch.float64 if dtype == np.float64 else torch.float32)


def _to_device(a: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(a).to(device)


def _raise_remote(errors: list) -> None:
    for r, err in enumerate(errors):
        if err is not None:
            kind, msg = err
            cls = getattr(builtins, kind, None)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                cls = RuntimeError
            raise cls(f"rank {r}: {msg}")
