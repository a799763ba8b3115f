"""Domain-gap analysis: how far the synthetic embeddings are from the real ones,
where (clusters), which samples, which simulation parameters, and along which
latent directions.  :func:`compare` computes everything and returns a
:class:`GapReport`; rendering (summary, JSON, HTML) lives in :mod:`simgap.report`.

Every kernel sum and nearest-neighbour search goes through simgap's fused C++
(or, for CUDA tensors, CUDA) kernels (:func:`mmd_test`, :func:`kernel_contract`, :func:`prdc`,
:func:`nearest_neighbors`, :func:`realism_score`, :func:`sliced_wasserstein`,
:func:`frechet_distance`); no n x m distance or kernel matrix is formed here.
The statistical learning steps (k-means, logistic regression, random forest)
use scikit-learn.

The package, in the order compare() runs it: :mod:`.inputs` (embeddings, ids,
labels, parameters, options, seeds and subsamples), :mod:`.gap` (how large the
gap is: MMD^2, its interval, the witness, C2ST, per class), :mod:`.where`
(clusters and their verdicts, per-sample realism and coverage, latent
directions, the 2-D map), :mod:`.why` (which parameters drive the gap);
:mod:`.core` runs these steps on one process's data and :mod:`.distributed`
runs ``compare(group=...)`` over shards.

``simgap.compare`` is the function (:mod:`simgap` re-exports it over this
package's name); the modules are reached by import, e.g.
``from simgap.compare.inputs import seeds``.
"""

from __future__ import annotations

from typing import Any

from ..report import GapReport
from .core import compare_local
from .distributed import compare_sharded
from .where import VERDICTS

__all__ = ["compare", "VERDICTS"]


def compare(
    real: Any,
    synthetic: Any,
    *,
    params: Any = None,
    labels: Any = None,
    ids: Any = None,
    n_permutations: int = 1000,
    n_bootstrap: int = 200,
    ci_level: float = 0.95,
    k: int = 5,
    n_clusters: Any = "auto",
    max_clusters: int = 10,
    alpha: float = 0.01,
    max_exact: int = 20_000,
    c2st_max: int = 5_000,
    c2st_folds: int = 5,
    n_bins: int = 8,
    n_directions: int = 5,
    map_method: str = "auto",
    map_points: int = 3_000,
    seed: Any = 0,
    group: Any = None,
) -> GapReport:
    r"""How far the synthetic embeddings are from the real ones, where, and why.

    Parameters
    ----------
    real : array_like, torch.Tensor, store path or EmbeddingStore, shape (n, d)
    synthetic : same kinds, shape (m, d)
        A store's per-sample metadata becomes ``params`` when ``params`` is None
        (its ``id`` column, if any, becomes the synthetic ids).  CUDA tensors
        (both on one device): the kernel sums (MMD^2, permutation test,
        bootstrap, witness), the k-NN statistics, the sliced Wasserstein and
        Frechet distances run on that GPU; the scikit-learn steps (C2ST,
        k-means, forests, PCA, map) run on one host copy of the embeddings.
        ``report.settings["device"]`` says which.  With ``group`` (NCCL, CUDA
        shards on each rank's current device), the shards stay on the GPUs:
        the exact MMD^2, permutation test and sliced Wasserstein distance over
        all rows run there (:mod:`simgap.distributed`), only the subsample's
        rows are copied to the host and gathered, and rank 0 computes the
        subsample statistics on its GPU.
    params : pandas.DataFrame, dict of 1-D arrays or EmbeddingStore, optional
        Simulation parameters, one row per synthetic sample; numeric and
        categorical (any other dtype, compared as strings) columns.
    labels : pair (real_labels, synthetic_labels) or {"real": ..., "synthetic": ...}, optional
        Class labels; adds ``per_class``.
    ids : pair or dict like ``labels``, optional
        Sample ids shown in the per-sample tables and the HTML report
        (default: row numbers).
    n_permutations : int, default 1000
        Relabellings of the permutation test (:func:`mmd_test`, one batched
        kernel contraction per memory batch).
    n_bootstrap : int, default 200
        Bootstrap draws for the MMD^2 interval (percentile bootstrap of the
        weighted unbiased estimator under multinomial resampling of each set,
        read off one fused contraction; see
        :func:`simgap.compare.gap.witness_and_bootstrap`).
    ci_level : float, default 0.95
    k : int, default 5
        Neighbours for precision / recall / density / coverage (Naeem et al. 2020)
        and for the per-sample coverage.
    n_clusters : "auto" or int, default "auto"
        k-means clusters of the pooled embeddings (PCA to 50 dims first when
        d > 50).  "auto" picks k in 2..``max_clusters`` with the best silhouette
        on a subsample of 3,000 rows.
    alpha : float, default 0.01
        Family-wise level of the cluster verdicts: a cluster gets a verdict other
        than "balanced" only when Fisher's exact test of its real/synthetic
        counts has p < alpha / #clusters.  Then, with ratio = share_synthetic /
        share_real: ratio <= 0.1 "missing", ratio >= 10 (or no real sample)
        "synthetic-only", ratio < 1/1.25 "under-represented", ratio > 1.25
        "over-represented", else "balanced".
    max_exact : int, default 20000
        Size threshold.  When a set has more rows, the kernel statistics (MMD^2,
        its permutation test and bootstrap interval, the witness reference) and
        the k-NN statistics (prdc, coverage, the realism reference) use a seeded
        random subsample of ``max_exact`` rows of that set (the interval is then
        the subsample's, so it is honest but wider), and the block estimator of
        :func:`mmd2` on all rows is added (``report.mmd2_block``).  The report's
        ``approximations`` list says what was subsampled.  The Frechet and
        sliced Wasserstein distances always use all rows.
    c2st_max : int, default 5000
        Rows per set used by the classifier two-sample test.
    c2st_folds : int, default 5
    n_bins : int, default 8
        Quantile bins per numeric parameter (fewer distinct values: one per value).
    n_directions : int, default 5
    map_method : {"auto", "pca", "umap"}, default "auto"
        2-D map for the HTML report; "auto" uses UMAP when umap-learn is installed.
    map_points : int, default 3000
    seed : int or None, default 0
        Seeds every random step (subsamples, permutations, bootstrap, k-means,
        cross-validation folds, forests, projections).
    group : torch.distributed.ProcessGroup or "auto", optional
        Sharded data: ``real`` and ``synthetic`` (and ``params``, ``labels``,
        ``ids``, split the same way) are this rank's rows; the whole data are
        the shards in rank order.  "auto": the default group when
        torch.distributed is initialised (otherwise a single-process call).
        MMD^2 (unbiased, median bandwidth of all rows), its permutation p-value
        and the sliced Wasserstein distance are then exact over all rows
        (:mod:`simgap.distributed`).  Everything else runs on a seeded
        subsample of at most ``max_exact`` rows per set (the same global rows
        whatever the sharding), gathered to every rank and listed in
        ``approximations``; ``synthetic_scores`` and ``real_coverage`` then
        cover only that subsample (ids default to global row numbers) and
        ``mmd2_block`` is None.  Every rank must call it with the same options
        and gets the same report (computed on rank 0 and broadcast).

    Returns
    -------
    GapReport
        Plain attributes (``mmd2``, ``mmd2_ci``, ``p_value``, ``swd``, ``fd``,
        ``prdc``, ``c2st_auc``, ``clusters``, ``synthetic_scores``,
        ``real_coverage``, ``parameter_importance``, ``per_class``,
        ``directions``) plus ``summary()``, ``to_dict()``, ``to_json()``,
        ``to_html()``.

    Notes
    -----
    The kernel is gaussian with the median-heuristic bandwidth of the pooled
    sets.  The witness of a synthetic sample z is
    mean_i k(z, real_i) - mean_j k(z, synthetic_j) (positive: the real density
    dominates there).  The parameter ranking is the permutation importance (drop
    in held-out R^2) of each parameter in a random forest that predicts the
    witness from the parameters; a direction is written only for parameters whose
    importance is significant and whose best and worst bins' 95% intervals do
    not overlap.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(200, 8))
    >>> syn = rng.normal(0.5, 1.0, size=(200, 8))
    >>> report = simgap.compare(real, syn, n_permutations=200, n_bootstrap=50)
    >>> report.p_value < 0.05 and report.c2st_auc > 0.6
    True
    """
    options = dict(
        params=params,
        labels=labels,
        ids=ids,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        ci_level=ci_level,
        k=k,
        n_clusters=n_clusters,
        max_clusters=max_clusters,
        alpha=alpha,
        max_exact=max_exact,
        c2st_max=c2st_max,
        c2st_folds=c2st_folds,
        n_bins=n_bins,
        n_directions=n_directions,
        map_method=map_method,
        map_points=map_points,
        seed=seed,
    )
    if group is not None:
        return compare_sharded(real, synthetic, group, options)
    return compare_local(real, synthetic, **options)
