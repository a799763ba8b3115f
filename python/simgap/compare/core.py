"""The body of :func:`simgap.compare` on one process's data, in named steps:
the inputs, how large the gap is, the per-sample tables, where (clusters), why
(parameters), per class, directions and map, and the report."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._util.arrays import concat_rows, like, take_rows, to_host
from ..kernels import kernel_contract, median_bandwidth
from ..metrics import frechet_distance, prdc
from ..mmd import mmd2, mmd_test
from ..report import GapReport
from ..sliced import sliced_wasserstein
from .gap import c2st, per_class, witness_and_bootstrap
from .inputs import Data, check_options, label_pair, load_arrays, metadata_params, pair_arg, params_frame, seeds, \
    subsample
from .where import Pooled, clusters, coverage, directions, map2d, realism
from .why import parameters

__all__ = ["ShardedGap", "compare_local"]

_log = logging.getLogger("simgap")


@dataclass
class ShardedGap:
    """What ``compare(group=...)`` computed over the rows of all ranks, handed to
    :func:`compare_local` on the gathered subsample."""

    sigma: float  # the bandwidth
    test: Any  # the MMDTestResult over all rows
    swd: float  # the sliced Wasserstein distance over all rows
    rows: tuple[np.ndarray, np.ndarray]  # the global rows of the gathered real and synthetic subsample
    n: int  # real rows, all ranks
    m: int  # synthetic rows, all ranks
    approximations: list[str]


@dataclass
class _Sides:
    """Per-sample side data: ids (default: row numbers), class labels, parameters."""

    real_ids: np.ndarray
    syn_ids: np.ndarray
    real_labels: np.ndarray | None
    syn_labels: np.ndarray | None
    params: Any  # DataFrame or None


@dataclass
class _Gap:
    """How large the gap is, from the exact-size subsample (rows ``rx``, ``ry``)."""

    rx: np.ndarray
    ry: np.ndarray
    xs: np.ndarray  # host rows of the real subsample
    xks: Any  # the subsample's rows where the kernel sums run
    yks: Any
    sigma: float
    test: Any
    reps: np.ndarray  # bootstrap replicates of MMD^2
    ci: tuple[float, float]
    block: dict | None
    witness_syn: np.ndarray  # every synthetic row
    witness_real: np.ndarray  # the subsample's real rows
    swd: float
    fd: float
    prdc: dict


@dataclass
class _Samples:
    """The per-sample tables and the classifier two-sample test."""

    synthetic_scores: Any  # DataFrame: id, row, witness, realism, realistic, p_real (+ cluster)
    real_coverage: Any  # DataFrame: id, row, covered, nn_distance, radius, nearest_synthetic, witness (+ cluster)
    realistic: np.ndarray  # per synthetic row
    auc: float  # C2ST AUC, mean over folds
    auc_std: float
    folds: int  # C2ST folds used
    direction: np.ndarray | None  # the classifier's, from real towards synthetic (unit length)


def _sklearn_threads():
    """Single-threaded OpenMP for scikit-learn steps.

    On small machines scikit-learn's OpenMP pool and the one of simgap's kernels
    (and torch's) oversubscribe the cores: KMeans on 600 rows took ~1 s instead of
    ~10 ms on 2 cores.  The scikit-learn steps here are small (subsampled), so one
    thread is both faster and predictable.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def compare_local(real: Any, synthetic: Any, *, sharded: ShardedGap | None = None, **options: Any) -> GapReport:
    """:func:`simgap.compare` on this process's data (every option given by
    keyword); ``sharded``: the exact statistics of a distributed call, whose
    gathered subsample ``real`` and ``synthetic`` are."""
    data = load_arrays(real, synthetic)
    opts = check_options(options, data.n, data.m)
    sides = _side_data(data, opts)
    s = seeds(opts["seed"], 12)
    approximations: list[str] = []
    notes: list[str] = []

    gap = _overall_gap(data, opts, s, sharded, approximations)  # how large
    samples = _samples(data, sides, gap, opts, s, approximations, notes)  # which samples
    z = Pooled(gap.xs, data.ya)  # exact-size rows of real; all synthetic
    table, cl_labels, sil = _clusters(z, gap, samples, opts, s)  # where
    importance = profiles = r2 = None
    pdf = sides.params
    if pdf is not None:  # why
        with _sklearn_threads():
            importance, profiles, r2 = parameters(pdf, gap.witness_syn, samples.realistic, opts["n_bins"], s[10])
    classes = _per_class(data, sides, gap, opts, s, approximations)
    dirs, dir_vecs = directions(data.xa, data.ya, samples.direction, opts["n_directions"], s[6])
    map_df, map_used = _map(data, sides, gap, z, cl_labels, opts, s)

    n_real, n_synthetic = data.n, data.m
    if sharded is not None:
        pdf = _to_global_rows(sharded, samples, pdf, map_df)
        n_real, n_synthetic = sharded.n, sharded.m
        approximations[:0] = sharded.approximations
    settings = {
        "kernel": "gaussian", "bandwidth": float(gap.sigma), "n_permutations": opts["n_permutations"],
        "n_bootstrap": opts["n_bootstrap"], "ci_level": float(opts["ci_level"]), "k": opts["k"],
        "n_clusters": opts["n_clusters"], "alpha": float(opts["alpha"]), "max_exact": opts["max_exact"],
        "c2st_max": opts["c2st_max"], "c2st_folds": samples.folds, "n_bins": opts["n_bins"],
        "map_method": map_used, "seed": opts["seed"], "device": data.device,
        "silhouette": {str(kk): v for kk, v in sil.items()},
    }
    return GapReport(
        n_real=n_real, n_synthetic=n_synthetic, dim=int(data.xa.shape[1]),
        mmd2=float(gap.test.statistic), mmd2_ci=gap.ci, mmd2_stderr=float(np.std(gap.reps, ddof=1)),
        mmd2_block=gap.block, p_value=float(gap.test.p_value), swd=float(gap.swd), fd=float(gap.fd),
        prdc=gap.prdc, c2st_auc=samples.auc, c2st_auc_std=samples.auc_std, clusters=table,
        synthetic_scores=samples.synthetic_scores, real_coverage=samples.real_coverage,
        parameter_importance=importance, parameter_profiles=profiles, parameter_r2=r2, params=pdf,
        per_class=classes, directions=dirs, direction_vectors=dir_vecs, map=map_df,
        approximations=approximations, notes=notes, settings=settings,
    )


# ----------------------------------------------------------------------------
# The steps
# ----------------------------------------------------------------------------


def _side_data(data: Data, opts: dict) -> _Sides:
    """Ids, labels and parameters (a synthetic store's metadata where none are given)."""
    n, m = data.n, data.m
    params, ids = metadata_params(opts["params"], opts["ids"], data.syn_meta)
    real_ids, syn_ids = pair_arg(ids, n, m, "ids")
    real_ids = np.arange(n) if real_ids is None else real_ids
    syn_ids = np.arange(m) if syn_ids is None else syn_ids
    real_labels, syn_labels = label_pair(opts["labels"], n, m)
    return _Sides(real_ids, syn_ids, real_labels, syn_labels, params_frame(params, m))


def _overall_gap(data: Data, opts: dict, s: list[int], sharded: ShardedGap | None,
                 approximations: list[str]) -> _Gap:
    """MMD^2 with its test, bootstrap interval and block estimate, the witness,
    the sliced Wasserstein and Frechet distances and prdc."""
    n, m, xk, yk = data.n, data.m, data.xk, data.yk
    max_exact = opts["max_exact"]
    # Exact kernel / k-NN statistics on at most max_exact rows per set.
    rx, ry = subsample(n, max_exact, s[0]), subsample(m, max_exact, s[1])
    xs, ys = data.xa[rx], data.ya[ry]
    xks, yks = (xs, ys) if data.device == "cpu" else (take_rows(xk, rx), take_rows(yk, ry))
    # The block estimator on all rows: blocks of up to 256, at least two where the
    # smaller set allows (a standard error); it pairs blocks, so it reads
    # n_blocks * block_size rows of each set.
    bs = max(2, min(256, min(n, m) // 2))
    n_blocks = min(n, m) // bs
    if n > max_exact or m > max_exact:
        approximations.append(
            f"kernel and k-NN statistics (MMD^2, p-value, interval, prdc, coverage) and the real rows of the "
            f"clusters use a random subsample of {len(rx)} real and {len(ry)} synthetic rows "
            f"(max_exact={max_exact})"
            + ("" if sharded is not None else
               f"; the block MMD^2 estimator (block_size={bs}, {n_blocks} blocks: {n_blocks * bs} random rows of "
               f"each set) is in mmd2_block")
        )
    if sharded is None:
        sigma = median_bandwidth(xks, yks, seed=s[2])
        test = mmd_test(xks, yks, opts["n_permutations"], bandwidth=sigma, seed=s[3])
    else:  # the exact statistics over all ranks' data, already computed
        sigma, test = sharded.sigma, sharded.test
    wit_pooled, reps = witness_and_bootstrap(xks, yks, sigma, opts["n_bootstrap"], s[4])
    q = (1.0 - opts["ci_level"]) / 2.0
    ci = (float(np.quantile(reps, q)), float(np.quantile(reps, 1.0 - q)))
    block = None
    if sharded is None and (n > max_exact or m > max_exact):
        value, se = mmd2(xk, yk, bandwidth=sigma, estimator="block", block_size=bs, return_stderr=True, seed=s[5])
        block = {"value": float(value), "stderr": float(se), "block_size": bs}

    # Witness of every synthetic sample (subsample rows: from the fused pass; others: one more contraction).
    if m > max_exact:
        z = concat_rows(xks, yks)
        w = np.concatenate([np.full(len(rx), 1.0 / len(rx)), np.full(len(ry), -1.0 / len(ry))])
        witness_syn = to_host(kernel_contract(yk, z, like(w, z), bandwidth=sigma))
    else:
        witness_syn = wit_pooled[len(rx):]
    witness_real = wit_pooled[: len(rx)]

    swd = sliced_wasserstein(xk, yk, seed=s[6]) if sharded is None else sharded.swd
    fd = frechet_distance(xk, yk)
    prdc_values = prdc(xks, yks, k=opts["k"])
    return _Gap(rx=rx, ry=ry, xs=xs, xks=xks, yks=yks, sigma=sigma, test=test, reps=reps, ci=ci,
                block=block, witness_syn=witness_syn, witness_real=witness_real, swd=swd, fd=fd, prdc=prdc_values)


def _samples(data: Data, sides: _Sides, gap: _Gap, opts: dict, s: list[int], approximations: list[str],
             notes: list[str]) -> _Samples:
    """The per-sample tables: each synthetic sample's witness, realism and
    P(real) from the classifier two-sample test; each real sample's coverage."""
    import pandas as pd

    m, rx, ry = data.m, gap.rx, gap.ry
    score, realistic = realism(gap.xks, data.yk)
    # Per-real-sample coverage (Naeem et al.: covered when the nearest synthetic
    # sample lies inside the real sample's k-NN ball).
    covered, nn_distance, nearest, radius = coverage(gap.xks, gap.yks, opts["k"])

    c2st_max = opts["c2st_max"]
    c2_rx = subsample(len(rx), c2st_max, s[7])
    c2_ry = subsample(m, c2st_max, s[8])
    if data.n > c2st_max or m > c2st_max:
        approximations.append(f"classifier two-sample test on {len(c2_rx)} real and {len(c2_ry)} synthetic rows "
                              f"(c2st_max={c2st_max})")
    with _sklearn_threads():
        auc, auc_sd, p_real, cdir, converged, folds = c2st(gap.xs[c2_rx], data.ya[c2_ry], data.ya, c2_ry,
                                                           opts["c2st_folds"], s[7])
    if folds < opts["c2st_folds"]:
        # Each fold holds out rows of both sets: no more folds than the smaller set's rows.
        text = (f"c2st_folds={opts['c2st_folds']} is more than the {min(len(c2_rx), len(c2_ry))} rows of the "
                f"smaller set in the classifier two-sample test; it used {folds} folds (settings['c2st_folds'])")
        notes.append(f"the C2ST used {folds} folds, not c2st_folds={opts['c2st_folds']}: the smaller set has "
                     f"{min(len(c2_rx), len(c2_ry))} rows")
        warnings.warn(text, UserWarning, stacklevel=4)  # compare() -> compare_local() -> _samples()
        _log.warning(text)
    if not converged:
        notes.append("the C2ST logistic regression reached max_iter in some folds; its AUC may be slightly low")

    synthetic_scores = pd.DataFrame({
        "id": sides.syn_ids,
        "row": np.arange(m),  # the input row (distributed: the global row, _to_global_rows)
        "witness": gap.witness_syn,
        "realism": score,
        "realistic": realistic,
        "p_real": p_real,
    })
    real_coverage = pd.DataFrame({
        "id": sides.real_ids[rx],
        "row": rx,
        "covered": covered,
        "nn_distance": nn_distance,
        "radius": radius,
        "nearest_synthetic": sides.syn_ids[ry[nearest]],
        "witness": gap.witness_real,
    })
    return _Samples(synthetic_scores=synthetic_scores, real_coverage=real_coverage, realistic=realistic, auc=auc,
                    auc_std=auc_sd, folds=folds, direction=cdir)


def _clusters(z: Pooled, gap: _Gap, samples: _Samples, opts: dict, s: list[int]):
    """k-means clusters of the pooled rows with their verdicts; adds each
    sample's cluster to the per-sample tables.  Returns (table, the cluster of
    every pooled row, silhouette by k)."""
    nx = len(gap.rx)
    with _sklearn_threads():
        table, labels, sil = clusters(z, nx, opts["n_clusters"], opts["max_clusters"], opts["alpha"],
                                      gap.witness_syn, samples.realistic, s[9])
    samples.synthetic_scores["cluster"] = labels[nx:]
    samples.real_coverage["cluster"] = labels[:nx]
    return table, labels, sil


def _per_class(data: Data, sides: _Sides, gap: _Gap, opts: dict, s: list[int], approximations: list[str]):
    """The per-class table (None without labels)."""
    if sides.real_labels is None:
        return None
    max_exact = opts["max_exact"]
    table = per_class(data.xk, data.yk, sides.real_labels, sides.syn_labels, gap.sigma, opts["k"],
                      opts["n_permutations"], max_exact, s[11])
    big = table[(table["n_real"] > max_exact) | (table["n_synthetic"] > max_exact)]
    if len(big):
        approximations.append(
            f"per_class: MMD^2, its p-value and prdc of the classes with more than max_exact={max_exact} rows "
            f"({', '.join(map(str, big['label'].tolist()[:5]))}{', ...' if len(big) > 5 else ''}) use a random "
            f"subsample of max_exact rows of each set; their sliced Wasserstein and Frechet distances use all rows"
        )
    return table


def _map(data: Data, sides: _Sides, gap: _Gap, z: Pooled, cl_labels: np.ndarray, opts: dict, s: list[int]):
    """The 2-D map with each point's id and input row; and the method used."""
    rx, m = gap.rx, data.m
    map_df, map_used = map2d(z, len(rx), cl_labels, opts["map_method"], opts["map_points"], s[9])
    map_df["id"] = np.where(map_df["set"] == "real", sides.real_ids[rx][np.minimum(map_df["index"], len(rx) - 1)],
                            sides.syn_ids[np.minimum(map_df["index"], m - 1)])
    map_df.loc[map_df["set"] == "real", "index"] = rx[map_df.loc[map_df["set"] == "real", "index"]]
    return map_df, map_used


def _to_global_rows(sharded: ShardedGap, samples: _Samples, pdf, map_df):
    """Rows of the gathered subsample -> global rows, in place; returns the
    parameters indexed by global row (looked up by input row, as the map's and
    the tables' rows are)."""
    grx, gry = sharded.rows
    real_coverage, synthetic_scores = samples.real_coverage, samples.synthetic_scores
    real_coverage["row"] = grx[real_coverage["row"].to_numpy()]
    synthetic_scores["row"] = gry[synthetic_scores["row"].to_numpy()]
    if pdf is not None:
        pdf = pdf.set_axis(gry[: len(pdf)], axis=0)
    is_real = (map_df["set"] == "real").to_numpy()
    idx = map_df["index"].to_numpy()
    map_df["index"] = np.where(is_real, grx[np.minimum(idx, len(grx) - 1)], gry[np.minimum(idx, len(gry) - 1)])
    return pdf
