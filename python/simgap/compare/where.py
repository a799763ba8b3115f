"""Where the gap is: k-means clusters of the pooled embeddings with a verdict
each, the least real synthetic samples and the uncovered real ones, the latent
directions along which the sets differ most, and the 2-D map of the report."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._util.arrays import to_host
from ..metrics import nearest_neighbors, realism_score
from ..sliced import sliced_wasserstein
from .inputs import subsample

__all__ = ["VERDICTS", "Pooled", "clusters", "realism", "coverage", "directions", "map2d"]

#: Cluster verdicts, from "real only" to "synthetic only".
VERDICTS = ("missing", "under-represented", "balanced", "over-represented", "synthetic-only")

# Verdict thresholds on ratio = share_synthetic / share_real (documented in compare()).
_MISSING_RATIO = 0.1
_ONLY_RATIO = 10.0
_IMBALANCE_RATIO = 1.25


# ----------------------------------------------------------------------------
# Clusters
# ----------------------------------------------------------------------------


class Pooled:
    """The rows of a then b, without copying them into one array."""

    def __init__(self, a: np.ndarray, b: np.ndarray):
        self.a, self.b = a, b
        self.shape = (a.shape[0] + b.shape[0], a.shape[1])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        na = self.a.shape[0]
        out = np.empty((rows.shape[0], self.shape[1]), dtype=np.float64)
        ina = rows < na
        out[ina] = self.a[rows[ina]]
        out[~ina] = self.b[rows[~ina] - na]
        return out

    def chunks(self, step: int = 16384):
        for arr in (self.a, self.b):
            for s in range(0, arr.shape[0], step):
                yield np.asarray(arr[s : s + step], dtype=np.float64)


def _reduce(z: Pooled, fit_rows: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """PCA to at most n_components dims (fitted on fit_rows, applied in row chunks)."""
    from sklearn.decomposition import PCA

    d = z.shape[1]
    if d <= n_components:
        return np.concatenate(list(z.chunks()), axis=0)
    pca = PCA(n_components=min(n_components, len(fit_rows) - 1), random_state=seed)
    pca.fit(z[fit_rows])
    return np.concatenate([pca.transform(c) for c in z.chunks()], axis=0)


def _choose_k(zr: np.ndarray, k_max: int, seed: int) -> tuple[int, dict[int, float]]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rows = subsample(zr.shape[0], 3000, seed)
    sample = zr[rows]
    scores: dict[int, float] = {}
    for k in range(2, min(k_max, sample.shape[0] - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(sample)
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(sample, labels, sample_size=min(2000, sample.shape[0]), random_state=seed))
    if not scores:
        return 1, scores
    return max(scores, key=lambda k: scores[k]), scores


def _fisher_p(a: int, b: int, c: int, d: int) -> float:
    from scipy.stats import fisher_exact

    return float(fisher_exact([[a, b], [c, d]])[1])


def _verdict(share_r: float, share_s: float, p: float, alpha: float) -> str:
    if p >= alpha:
        return "balanced"
    if share_r == 0:
        return "synthetic-only"
    ratio = share_s / share_r
    if ratio <= _MISSING_RATIO:
        return "missing"
    if ratio >= _ONLY_RATIO:
        return "synthetic-only"
    if ratio < 1.0 / _IMBALANCE_RATIO:
        return "under-represented"
    if ratio > _IMBALANCE_RATIO:
        return "over-represented"
    return "balanced"


def clusters(z: Pooled, n: int, n_clusters: Any, k_max: int, alpha: float, witness_syn: np.ndarray,
              realistic_syn: np.ndarray, seed: int):
    import pandas as pd
    from sklearn.cluster import KMeans

    N = z.shape[0]
    fit_rows = subsample(N, 20_000, seed)
    zr = _reduce(z, fit_rows, 50, seed)
    if n_clusters == "auto":
        k, scores = _choose_k(zr[fit_rows], k_max, seed)
    else:
        k, scores = int(n_clusters), {}
        if k > N:
            raise ValueError(f"n_clusters={k} is larger than the {N} pooled samples")
    if k == 1:
        labels = np.zeros(N, dtype=np.int64)
    else:
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(zr[fit_rows])
        labels = km.predict(zr).astype(np.int64)
    m = N - n
    lr, ls = labels[:n], labels[n:]
    rows = []
    for c in range(k):
        cr, cs = int(np.sum(lr == c)), int(np.sum(ls == c))
        sr, ss = cr / n, cs / m
        p = _fisher_p(cr, n - cr, cs, m - cs)
        ratio = ss / sr if sr > 0 else float("inf")
        members = ls == c
        rows.append({
            "cluster": c,
            "n_real": cr,
            "n_synthetic": cs,
            "share_real": sr,
            "share_synthetic": ss,
            "ratio": ratio,
            "p_value": p,
            "verdict": _verdict(sr, ss, p, alpha / k),
            "mean_witness": float(witness_syn[members].mean()) if cs else float("nan"),
            "realistic_rate": float(realistic_syn[members].mean()) if cs else float("nan"),
        })
    table = pd.DataFrame(rows)
    return table, labels, scores


# ----------------------------------------------------------------------------
# Samples: the least real synthetic ones, the uncovered real ones
# ----------------------------------------------------------------------------


def realism(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """The realism score of every row of ``y`` against the reference rows ``x``
    (Kynkaanniemi et al. 2019, with the paper's k = 3 where ``x`` allows), and
    whether it is realistic (score >= 1)."""
    score = to_host(realism_score(x, y, k=min(3, x.shape[0] - 1)))
    return score, score >= 1.0


def coverage(x: Any, y: Any, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per real row of ``x``: covered (Naeem et al. 2020: the nearest synthetic
    row of ``y`` lies inside the real row's k-NN ball), the distance to that
    synthetic row, its index in ``y``, and the ball's radius."""
    radius = to_host(nearest_neighbors(x, k=k)[0])[:, k - 1]
    dn, idn = (to_host(a) for a in nearest_neighbors(x, y, k=1))
    return dn[:, 0] < radius, dn[:, 0], idn[:, 0], radius


# ----------------------------------------------------------------------------
# Directions and map
# ----------------------------------------------------------------------------


def directions(x: np.ndarray, y: np.ndarray, classifier_dir: np.ndarray | None, n_directions: int, seed: int):
    import pandas as pd
    from sklearn.decomposition import PCA

    d = x.shape[1]
    names, vecs = [], []
    diff = y.mean(axis=0, dtype=np.float64) - x.mean(axis=0, dtype=np.float64)
    if np.linalg.norm(diff) > 0:
        names.append("mean difference")
        vecs.append(diff / np.linalg.norm(diff))
    if classifier_dir is not None:
        names.append("classifier")
        vecs.append(classifier_dir)
    rows_x, rows_y = subsample(x.shape[0], 5000, seed), subsample(y.shape[0], 5000, seed + 1)
    pooled = np.concatenate([x[rows_x], y[rows_y]]).astype(np.float64)
    k = int(min(20, d, pooled.shape[0] - 1))
    if k >= 1:
        pca = PCA(n_components=k, random_state=seed).fit(pooled)
        for i, comp in enumerate(pca.components_):
            names.append(f"PC{i + 1}")
            vecs.append(comp)
    theta = np.stack(vecs, axis=1)  # (d, L)
    _, w22 = sliced_wasserstein(x, y, projections=theta, return_per_projection=True)
    px = np.concatenate([c @ theta for c in Pooled(x, x[:0]).chunks()], axis=0)
    py = np.concatenate([c @ theta for c in Pooled(y, y[:0]).chunks()], axis=0)
    mr, ms = px.mean(0), py.mean(0)
    sr, ss = px.std(0, ddof=1) if x.shape[0] > 1 else np.zeros(len(names)), py.std(0, ddof=1) if y.shape[0] > 1 else np.zeros(len(names))
    pooled_sd = np.sqrt((sr**2 + ss**2) / 2)
    table = pd.DataFrame({
        "direction": names,
        "wasserstein": np.sqrt(np.maximum(w22, 0)),
        "mean_real": mr, "mean_synthetic": ms, "std_real": sr, "std_synthetic": ss,
        "effect_size": np.where(pooled_sd > 0, (ms - mr) / np.where(pooled_sd > 0, pooled_sd, 1), 0.0),
    })
    order = np.argsort(-table["wasserstein"].to_numpy(), kind="stable")[:n_directions]
    return table.iloc[order].reset_index(drop=True), theta.T[order]


def map2d(z: Pooled, n: int, labels: np.ndarray, method: str, max_points: int, seed: int):
    """2-D coordinates of a (stratified) subsample of the pooled rows, for the HTML map."""
    import pandas as pd

    N = z.shape[0]
    m = N - n
    half = max_points // 2
    rr = subsample(n, max(half, max_points - m), seed)
    rs = subsample(m, max(half, max_points - len(rr)), seed + 1)
    rows = np.concatenate([rr, n + rs])
    pts = z[rows]
    used = "pca"
    coords = None
    if method in ("auto", "umap"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import umap  # type: ignore

                coords = umap.UMAP(n_components=2, random_state=seed).fit_transform(pts)
            used = "umap"
        except ImportError:
            if method == "umap":
                raise ImportError("map_method='umap' needs the umap-learn package (pip install umap-learn)") from None
    if coords is None:
        from sklearn.decomposition import PCA

        if pts.shape[1] >= 2 and pts.shape[0] >= 2:
            coords = PCA(n_components=2, random_state=seed).fit_transform(pts)
        else:
            coords = np.column_stack([pts[:, 0] if pts.shape[1] else np.zeros(len(pts)), np.zeros(len(pts))])
    return pd.DataFrame({
        "x": coords[:, 0], "y": coords[:, 1],
        "set": np.where(rows < n, "real", "synthetic"),
        "index": np.where(rows < n, rows, rows - n),
        "cluster": labels[rows],
    }), used
