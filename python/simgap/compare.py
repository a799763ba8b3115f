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
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Mapping

import numpy as np

from ._util.arrays import is_tensor as _is_torch_tensor
from ._ops.backend import device_of
from ._ops.cuda import device_pair
from ._util.arrays import concat_rows as _concat
from ._util.arrays import like as _like
from ._util.arrays import take_rows as _take
from ._util.arrays import to_host as _host
from ._ops.inputs import as_matrix, cast, check_same_features, common_dtype
from ._util.checks import as_positive_int
from .kernels import kernel_contract, median_bandwidth
from .metrics import frechet_distance, nearest_neighbors, prdc, realism_score
from .mmd import mmd2, mmd_test
from .sliced import sliced_wasserstein

__all__ = ["compare", "VERDICTS"]

#: Cluster verdicts, from "real only" to "synthetic only".
VERDICTS = ("missing", "under-represented", "balanced", "over-represented", "synthetic-only")

# Verdict thresholds on ratio = share_synthetic / share_real (documented in compare()).
_MISSING_RATIO = 0.1
_ONLY_RATIO = 10.0
_IMBALANCE_RATIO = 1.25
_CONTRACT_BYTES = 256 << 20  # output of one bootstrap contraction batch


# ----------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------


def _store_parts(obj: Any) -> tuple[Any, dict | None]:
    """(embeddings, metadata or None) for a store (path or EmbeddingStore); (obj, None) otherwise."""
    try:
        from .store import EmbeddingStore
    except ImportError:  # pragma: no cover - the store module is optional
        return obj, None
    import os

    if isinstance(obj, (str, os.PathLike)):
        obj = EmbeddingStore(obj)
    if isinstance(obj, EmbeddingStore):
        return obj.embeddings, obj.metadata
    return obj, None


def _embeddings(obj: Any, name: str) -> np.ndarray:
    """A checked 2-D NumPy array (a CUDA tensor is copied to the host)."""
    if _is_torch_tensor(obj) and obj.device.type != "cpu":
        obj = obj.detach().cpu()
    try:
        from .store import as_embeddings
    except ImportError:  # pragma: no cover
        as_embeddings = None
    if as_embeddings is not None and not isinstance(obj, np.ndarray):
        obj = as_embeddings(obj, name=name)
    return as_matrix(obj, name)


def _pair_arg(value: Any, n: int, m: int, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(real_values, synthetic_values)`` from a pair, a {"real", "synthetic"} mapping or None."""
    if value is None:
        return None, None
    if isinstance(value, Mapping):
        unknown = set(value) - {"real", "synthetic"}
        if unknown:
            raise ValueError(f"{name}: unknown keys {sorted(map(str, unknown))}; use 'real' and 'synthetic'")
        pair = (value.get("real"), value.get("synthetic"))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value[0], (str, bytes, numbers.Number)):
        pair = (value[0], value[1])
    else:
        raise TypeError(
            f"{name} must be a pair (real_{name}, synthetic_{name}) or a dict with keys 'real' and "
            f"'synthetic'; got {type(value).__name__}"
        )
    out = []
    for part, rows, side in zip(pair, (n, m), ("real", "synthetic")):
        if part is None:
            out.append(None)
            continue
        if _is_torch_tensor(part):
            part = part.detach().cpu().numpy()
        arr = np.asarray(part)
        if arr.ndim != 1:
            raise ValueError(f"{name} for {side} must be 1-D; got shape {arr.shape}")
        if arr.shape[0] != rows:
            raise ValueError(f"{name} for {side} has {arr.shape[0]} entries but {side} has {rows} rows")
        out.append(arr)
    return out[0], out[1]


def _params_frame(params: Any, m: int):
    import pandas as pd

    if params is None:
        return None
    try:
        from .store import EmbeddingStore

        if isinstance(params, EmbeddingStore):
            params = params.metadata
            if params is None:
                raise ValueError("params: the embedding store has no metadata")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(params, pd.DataFrame):
        df = params.reset_index(drop=True).copy()
    elif isinstance(params, Mapping):
        cols = {}
        for key, values in params.items():
            arr = values.detach().cpu().numpy() if _is_torch_tensor(values) else np.asarray(values)
            if arr.ndim != 1:
                raise ValueError(f"params[{key!r}] must be 1-D (one value per synthetic sample); got shape {arr.shape}")
            cols[str(key)] = arr
        df = pd.DataFrame(cols)
    else:
        raise TypeError(
            f"params must be a pandas DataFrame, a dict of 1-D arrays or an embedding store; got {type(params).__name__}"
        )
    if df.shape[1] == 0:
        raise ValueError("params has no columns")
    if df.shape[0] != m:
        raise ValueError(f"params has {df.shape[0]} rows but synthetic has {m}; give one row per synthetic sample")
    df.columns = [str(c) for c in df.columns]
    if len(set(df.columns)) != df.shape[1]:
        raise ValueError("params has duplicate column names")
    return df


def _is_numeric(series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


def _sklearn_threads():
    """Single-threaded OpenMP for scikit-learn steps.

    On small machines scikit-learn's OpenMP pool and the one of simgap's kernels
    (and torch's) oversubscribe the cores: KMeans on 600 rows took ~1 s instead of
    ~10 ms on 2 cores.  The scikit-learn steps here are small (subsampled), so one
    thread is both faster and predictable.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _seeds(seed: Any, k: int) -> list[int]:
    """k independent integer seeds derived from ``seed`` (None: fresh entropy)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed}")
    ss = np.random.SeedSequence(seed)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in ss.spawn(k)]


def _subsample(n: int, limit: int, seed: int) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


# ----------------------------------------------------------------------------
# Overall gap
# ----------------------------------------------------------------------------


def _witness_and_bootstrap(x: Any, y: Any, sigma: float, n_bootstrap: int, seed: int):
    """Witness values of every pooled row and bootstrap replicates of the unbiased MMD^2.

    One fused contraction C = K(z, z) W over the pooled rows z = (x, y) (in column
    batches of bounded memory).  Column 0 holds the witness weights (1/n on x,
    -1/m on y).  Each bootstrap draw b adds two columns, [a_b; 0] and [0; c_b],
    with a_b, c_b multinomial resampling weights (counts / n, counts / m).  With
    K' = K - I (the gaussian kernel has k(z, z) = 1) the replicate is the weighted
    unbiased estimate of :func:`mmd2` with ``x_weights=a_b, y_weights=c_b``:

        a' K'_xx a / (1 - |a|^2) + c' K'_yy c / (1 - |c|^2) - 2 a' K_xy c.
    """
    n, m = x.shape[0], y.shape[0]
    N = n + m
    z = _concat(x, y)  # NumPy, or CUDA tensors: the contraction runs where the data are
    rng = np.random.default_rng(seed)
    wit_col = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    witness = None
    reps = np.empty(n_bootstrap)
    per_batch = max(1, int(_CONTRACT_BYTES // (N * 16 * 2)))
    done = 0
    while done < n_bootstrap:
        q = min(per_batch, n_bootstrap - done)
        first = witness is None
        W = np.zeros((N, 2 * q + first))
        if first:  # the witness rides along in the first batch's contraction
            W[:, -1] = wit_col
        for c in range(q):
            W[:n, 2 * c] = rng.multinomial(n, np.full(n, 1.0 / n)) / n
            W[n:, 2 * c + 1] = rng.multinomial(m, np.full(m, 1.0 / m)) / m
        C = _host(kernel_contract(z, None, _like(W, z), bandwidth=sigma))
        if first:
            witness = C[:, -1].copy()
        C -= W  # K' W: the diagonal k(z, z) = 1 removed
        for c in range(q):
            a, b = W[:n, 2 * c], W[n:, 2 * c + 1]
            sxx = float(a @ C[:n, 2 * c])
            syy = float(b @ C[n:, 2 * c + 1])
            sxy = float(b @ C[n:, 2 * c])
            da, db = 1.0 - float(a @ a), 1.0 - float(b @ b)
            reps[done + c] = sxx / max(da, 1e-12) + syy / max(db, 1e-12) - 2.0 * sxy
        done += q
    return witness, reps


def _c2st(x: np.ndarray, y: np.ndarray, y_all: np.ndarray, y_rows: np.ndarray, folds: int, seed: int):
    """Cross-validated logistic-regression AUC (real = 1) and P(real | synthetic row).

    Returns (mean AUC, std over folds, p_real for every row of y_all, direction in
    embedding space, converged).  Rows of y_all inside the fitted subsample
    ``y_rows`` get out-of-fold probabilities; the others the mean of the fold models.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, m = x.shape[0], y.shape[0]
    X = np.concatenate([x, y], axis=0).astype(np.float64)
    t = np.concatenate([np.ones(n), np.zeros(m)])
    folds = int(min(folds, n, m))
    aucs, coefs = [], []
    oof = np.full(m, np.nan)
    rest = np.ones(y_all.shape[0], dtype=bool)
    rest[y_rows] = False
    rest_p = np.zeros(int(rest.sum()))
    converged = True
    if folds < 2:
        return float("nan"), float("nan"), np.full(y_all.shape[0], np.nan), None, True
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in skf.split(X, t):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X[train], t[train])
        converged &= not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        p = model.predict_proba(X[test])[:, 1]
        aucs.append(roc_auc_score(t[test], p))
        syn = test[test >= n]
        oof[syn - n] = model.predict_proba(X[syn])[:, 1]
        if rest.any():
            rest_p += model.predict_proba(np.asarray(y_all[rest], dtype=np.float64))[:, 1] / folds
        scaler, lr = model[0], model[1]
        coefs.append(lr.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0))
    p_all = np.empty(y_all.shape[0])
    p_all[y_rows] = oof
    p_all[rest] = rest_p
    direction = -np.mean(coefs, axis=0)  # pointing from real towards synthetic
    norm = np.linalg.norm(direction)
    direction = direction / norm if norm > 0 else None
    return float(np.mean(aucs)), float(np.std(aucs)), p_all, direction, converged


# ----------------------------------------------------------------------------
# Where: clusters
# ----------------------------------------------------------------------------


class _Pooled:
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


def _reduce(z: _Pooled, fit_rows: np.ndarray, n_components: int, seed: int) -> np.ndarray:
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

    rows = _subsample(zr.shape[0], 3000, seed)
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


def _clusters(z: _Pooled, n: int, n_clusters: Any, k_max: int, alpha: float, witness_syn: np.ndarray,
              realistic_syn: np.ndarray, seed: int):
    import pandas as pd
    from sklearn.cluster import KMeans

    N = z.shape[0]
    fit_rows = _subsample(N, 20_000, seed)
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
# Which parameters
# ----------------------------------------------------------------------------


def _mean_ci(v: np.ndarray) -> tuple[float, float, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mu = float(v.mean())
    if v.size < 2:
        return mu, float("nan"), float("nan")
    h = 1.96 * float(v.std(ddof=1)) / math.sqrt(v.size)
    return mu, mu - h, mu + h


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z = 1.96
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return c - h, c + h


def _profile(series, score: np.ndarray, realistic: np.ndarray, max_bins: int):
    """Per-bin (numeric) or per-value (categorical) realism of the synthetic samples."""
    import pandas as pd

    numeric = _is_numeric(series)
    values = series.to_numpy()
    rows = []
    if numeric:
        v = values.astype(np.float64)
        ok = np.isfinite(v)
        uniq = np.unique(v[ok])
        if uniq.size <= max_bins:
            groups = [(u, u, v == u) for u in uniq]
        else:
            edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, max_bins + 1)))
            idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
            groups = [(edges[b], edges[b + 1], ok & (idx == b)) for b in range(len(edges) - 1)]
        for lo, hi, mask in groups:
            rows.append(_bin_row(str(_fmt(lo)) if lo == hi else f"{_fmt(lo)}–{_fmt(hi)}", float(lo), float(hi),
                                 mask, score, realistic))
        if (~ok).any():
            rows.append(_bin_row("missing", float("nan"), float("nan"), ~ok, score, realistic))
    else:
        v = np.array(["<missing>" if _isna(a) else str(a) for a in values], dtype=object)
        for u in sorted(set(v.tolist())):
            rows.append(_bin_row(u, float("nan"), float("nan"), v == u, score, realistic))
    table = pd.DataFrame(rows)
    return table[table["count"] > 0].reset_index(drop=True), numeric


def _isna(a: Any) -> bool:
    try:
        return a is None or (isinstance(a, float) and math.isnan(a))
    except TypeError:  # pragma: no cover
        return False


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _bin_row(label, lo, hi, mask, score, realistic) -> dict:
    cnt = int(mask.sum())
    mu, cl, ch = _mean_ci(score[mask])
    k = int(realistic[mask].sum())
    rl, rh = _wilson(k, cnt)
    return {
        "bin": label, "low": lo, "high": hi, "count": cnt,
        "mean_score": mu, "ci_low": cl, "ci_high": ch,
        "realistic_rate": k / cnt if cnt else float("nan"), "rate_ci_low": rl, "rate_ci_high": rh,
    }


def _direction_text(name: str, series, prof, numeric: bool, significant: bool) -> str:
    """A plain-language direction, or "" when the parameter's bins do not differ significantly."""
    if not significant or len(prof) < 2:
        return ""
    p = prof[prof["bin"] != "missing"].reset_index(drop=True)
    if len(p) < 2 or not np.isfinite(p["ci_low"]).all():
        return ""
    best = int(np.nanargmax(p["mean_score"].to_numpy()))
    worst = int(np.nanargmin(p["mean_score"].to_numpy()))
    if not p.loc[worst, "ci_high"] < p.loc[best, "ci_low"]:
        return ""
    good = p["ci_high"].to_numpy() >= p.loc[best, "ci_low"]
    if numeric:
        lo_i = hi_i = best
        while lo_i - 1 >= 0 and good[lo_i - 1]:
            lo_i -= 1
        while hi_i + 1 < len(p) and good[hi_i + 1]:
            hi_i += 1
        lo, hi = float(p.loc[lo_i, "low"]), float(p.loc[hi_i, "high"])
        v = series.to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        med, q1, q3 = (float(np.quantile(v, q)) for q in (0.5, 0.25, 0.75))
        inside = float(np.mean((v >= lo) & (v <= hi)))
        rng_txt = _fmt(lo) if lo == hi else f"{_fmt(lo)}–{_fmt(hi)}"
        where = "inside" if lo <= med <= hi else "outside"
        return (f"{name}: real data matches {rng_txt}; current sampling centres on {_fmt(med)} "
                f"(middle half {_fmt(q1)}–{_fmt(q3)}, {where} that range; {inside:.0%} of samples fall in it)")
    good_vals = [str(b) for b, g in zip(p["bin"], good) if g]
    worst_share = p.loc[worst, "count"] / p["count"].sum()
    return (f"{name}: {', '.join(repr(g) for g in good_vals)} match real data best; "
            f"{p.loc[worst, 'bin']!r} looks least real ({worst_share:.0%} of samples)")


def _parameters(df, score: np.ndarray, realistic: np.ndarray, max_bins: int, seed: int):
    """Importance ranking (random forest + permutation importance) and per-parameter profiles."""
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import train_test_split

    m = df.shape[0]
    X = np.empty((m, df.shape[1]))
    for j, col in enumerate(df.columns):
        s = df[col]
        if _is_numeric(s):
            v = np.array(s.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)  # a copy
            v[~np.isfinite(v)] = np.nan  # +-inf: missing, as in the profiles
            if np.nanmax(np.abs(v), initial=0.0) > 1e30:
                v = np.arcsinh(v)  # monotone, so the same forest: within the float32 trees' range
            X[:, j] = v
        else:
            codes, _ = pd.factorize(s.astype(str), sort=True)
            X[:, j] = codes
    ok = np.isfinite(score)
    rows = _subsample(int(ok.sum()), 8000, seed)
    Xs, ys = X[ok][rows], score[ok][rows]
    r2 = float("nan")
    imp = np.zeros(df.shape[1])
    imp_sd = np.zeros(df.shape[1])
    if Xs.shape[0] >= 20:
        Xtr, Xte, ytr, yte = train_test_split(Xs, ys, test_size=0.3, random_state=seed)
        leaf = max(3, Xtr.shape[0] // 200)
        rf = RandomForestRegressor(n_estimators=150, min_samples_leaf=leaf, random_state=seed, n_jobs=1)
        rf.fit(Xtr, ytr)
        r2 = float(rf.score(Xte, yte))
        pi = permutation_importance(rf, Xte, yte, n_repeats=8, random_state=seed, n_jobs=1)
        imp, imp_sd = pi.importances_mean, pi.importances_std
    profiles = {}
    table_rows = []
    positive = float(np.clip(imp, 0, None).sum())
    for j, col in enumerate(df.columns):
        prof, numeric = _profile(df[col], score, realistic, max_bins)
        profiles[col] = prof
        significant = bool(imp[j] > 0.01 and imp[j] > 2 * imp_sd[j])
        table_rows.append({
            "parameter": col,
            "kind": "numeric" if numeric else "categorical",
            "importance": float(imp[j]),
            "importance_std": float(imp_sd[j]),
            "share": float(max(imp[j], 0.0) / positive) if positive > 0 else 0.0,
            "significant": significant,
            "direction": _direction_text(col, df[col], prof, numeric, significant),
        })
    table = pd.DataFrame(table_rows).sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    return table, profiles, r2


# ----------------------------------------------------------------------------
# Directions and map
# ----------------------------------------------------------------------------


def _directions(x: np.ndarray, y: np.ndarray, classifier_dir: np.ndarray | None, n_directions: int, seed: int):
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
    rows_x, rows_y = _subsample(x.shape[0], 5000, seed), _subsample(y.shape[0], 5000, seed + 1)
    pooled = np.concatenate([x[rows_x], y[rows_y]]).astype(np.float64)
    k = int(min(20, d, pooled.shape[0] - 1))
    if k >= 1:
        pca = PCA(n_components=k, random_state=seed).fit(pooled)
        for i, comp in enumerate(pca.components_):
            names.append(f"PC{i + 1}")
            vecs.append(comp)
    theta = np.stack(vecs, axis=1)  # (d, L)
    _, w22 = sliced_wasserstein(x, y, projections=theta, return_per_projection=True)
    px = np.concatenate([c @ theta for c in _Pooled(x, x[:0]).chunks()], axis=0)
    py = np.concatenate([c @ theta for c in _Pooled(y, y[:0]).chunks()], axis=0)
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


def _map2d(z: _Pooled, n: int, labels: np.ndarray, method: str, max_points: int, seed: int):
    """2-D coordinates of a (stratified) subsample of the pooled rows, for the HTML map."""
    import pandas as pd

    N = z.shape[0]
    m = N - n
    half = max_points // 2
    rr = _subsample(n, max(half, max_points - m), seed)
    rs = _subsample(m, max(half, max_points - len(rr)), seed + 1)
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


# ----------------------------------------------------------------------------
# Per class
# ----------------------------------------------------------------------------


def _missing_as_none(labels: np.ndarray | None) -> np.ndarray | None:
    """Class labels with every missing value (None, NaN, pd.NA, NaT) as None: one
    class of its own (NaN != NaN made one empty class per NaN, pd.NA raised)."""
    if labels is None:
        return None
    import pandas as pd

    missing = np.asarray(pd.isna(labels), dtype=bool)
    if not missing.any():
        return labels
    out = np.empty(labels.shape[0], dtype=object)
    out[:] = labels.tolist()
    out[missing] = None
    return out


def _class_rows(lab: np.ndarray, c: Any) -> np.ndarray:
    if c is None:
        return np.flatnonzero(np.fromiter((v is None for v in lab), dtype=bool, count=lab.shape[0]))
    return np.flatnonzero(lab == c)


def _per_class(x, y, lx, ly, sigma, k, n_permutations, max_exact, seed):
    """Per class: MMD^2 with its p-value and prdc on at most max_exact rows of
    each set (a seeded subsample), sliced Wasserstein and Frechet distances on
    all rows; missing labels (None) form one class."""
    import pandas as pd

    keys = sorted(set(lx.tolist()) | set(ly.tolist()), key=lambda v: (v is None, str(type(v)), "" if v is None else v))
    rows = []
    for j, c in enumerate(keys):
        xc, yc = _take(x, _class_rows(lx, c)), _take(y, _class_rows(ly, c))
        row: dict[str, Any] = {"label": c, "n_real": int(xc.shape[0]), "n_synthetic": int(yc.shape[0])}
        for key in ("mmd2", "p_value", "swd", "fd", "precision", "recall", "density", "coverage"):
            row[key] = float("nan")
        if xc.shape[0] >= 2 and yc.shape[0] >= 2:
            xq = _take(xc, _subsample(xc.shape[0], max_exact, seed + 2 * j))
            yq = _take(yc, _subsample(yc.shape[0], max_exact, seed + 2 * j + 1))
            t = mmd_test(xq, yq, n_permutations, bandwidth=sigma, seed=seed)
            row.update(mmd2=t.statistic, p_value=t.p_value, swd=sliced_wasserstein(xc, yc, seed=seed),
                       fd=frechet_distance(xc, yc))
            if xq.shape[0] > k and yq.shape[0] > k:
                row.update(prdc(xq, yq, k=k))
        row["note"] = ("missing from synthetic" if yc.shape[0] == 0 else
                       "synthetic only" if xc.shape[0] == 0 else "")
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------
# compare()
# ----------------------------------------------------------------------------


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
):
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
        read off one fused contraction; see ``_witness_and_bootstrap``).
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
        return _compare_distributed(real, synthetic, group, options)
    return _compare_impl(real, synthetic, **options)


def _compare_impl(
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
    _dist: dict | None = None,
):
    """The body of :func:`compare`; ``_dist``: the exact statistics of a distributed call."""
    import pandas as pd

    from .report import GapReport

    real_src, _ = _store_parts(real) if not isinstance(real, np.ndarray) else (real, None)
    syn_src, syn_meta = _store_parts(synthetic) if not isinstance(synthetic, np.ndarray) else (synthetic, None)
    device = device_of(real=real_src, synthetic=syn_src)
    if device != "cpu":
        # Kernel sums, k-NN and distances on the GPU (xk, yk); scikit-learn's steps
        # (C2ST, k-means, forests, PCA, map) on one host copy (xa, ya).
        xk, yk = device_pair(real_src, syn_src, "real", "synthetic")
        xa, ya = _host(xk), _host(yk)
    else:
        xa = _embeddings(real_src, "real")
        ya = _embeddings(syn_src, "synthetic")
        check_same_features(xa, ya, "real", "synthetic")
        dtype = common_dtype(xa, ya)
        xa, ya = cast(xa, dtype), cast(ya, dtype)
        xk, yk = xa, ya
    n, m = xa.shape[0], ya.shape[0]
    k = as_positive_int(k, "k")
    for rows, name in ((n, "real"), (m, "synthetic")):
        if rows <= k:
            raise ValueError(f"{name} has {rows} rows; compare() with k={k} needs more than k")
    n_permutations = as_positive_int(n_permutations, "n_permutations")
    n_bootstrap = as_positive_int(n_bootstrap, "n_bootstrap", minimum=2)
    max_exact = as_positive_int(max_exact, "max_exact", minimum=2 * (k + 1))
    c2st_max = as_positive_int(c2st_max, "c2st_max", minimum=2)
    c2st_folds = as_positive_int(c2st_folds, "c2st_folds", minimum=2)
    n_bins = as_positive_int(n_bins, "n_bins", minimum=2)
    n_directions = as_positive_int(n_directions, "n_directions")
    max_clusters = as_positive_int(max_clusters, "max_clusters", minimum=2)
    map_points = as_positive_int(map_points, "map_points", minimum=2)
    if not (isinstance(ci_level, numbers.Real) and 0 < ci_level < 1):
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (n_clusters == "auto" or (isinstance(n_clusters, numbers.Integral) and not isinstance(n_clusters, bool)
                                     and n_clusters >= 1)):
        raise ValueError(f"n_clusters must be 'auto' or a positive integer, got {n_clusters!r}")
    if map_method not in ("auto", "pca", "umap"):
        raise ValueError(f"map_method must be 'auto', 'pca' or 'umap', got {map_method!r}")

    if params is None and syn_meta is not None:
        meta = dict(syn_meta)
        if ids is None and "id" in meta:
            ids = {"synthetic": meta.pop("id")}
        else:
            meta.pop("id", None)
        params = meta or None
    real_ids, syn_ids = _pair_arg(ids, n, m, "ids")
    real_ids = np.arange(n) if real_ids is None else real_ids
    syn_ids = np.arange(m) if syn_ids is None else syn_ids
    real_labels, syn_labels = (_missing_as_none(v) for v in _pair_arg(labels, n, m, "labels"))
    if (real_labels is None) != (syn_labels is None):
        raise ValueError("labels: give class labels for both real and synthetic")
    pdf = _params_frame(params, m)

    s = _seeds(seed, 12)
    approximations: list[str] = []
    notes: list[str] = []

    # Exact kernel / k-NN statistics on at most max_exact rows per set.
    rx, ry = _subsample(n, max_exact, s[0]), _subsample(m, max_exact, s[1])
    xs, ys = xa[rx], ya[ry]
    xks, yks = (xs, ys) if device == "cpu" else (_take(xk, rx), _take(yk, ry))
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
            + ("" if _dist is not None else
               f"; the block MMD^2 estimator (block_size={bs}, {n_blocks} blocks: {n_blocks * bs} random rows of "
               f"each set) is in mmd2_block")
        )
    if _dist is None:
        sigma = median_bandwidth(xks, yks, seed=s[2])
        test = mmd_test(xks, yks, n_permutations, bandwidth=sigma, seed=s[3])
    else:  # the exact statistics over all ranks' data, already computed
        sigma, test = _dist["sigma"], _dist["test"]
    wit_pooled, reps = _witness_and_bootstrap(xks, yks, sigma, n_bootstrap, s[4])
    q = (1.0 - ci_level) / 2.0
    ci = (float(np.quantile(reps, q)), float(np.quantile(reps, 1.0 - q)))
    block = None
    if _dist is None and (n > max_exact or m > max_exact):
        value, se = mmd2(xk, yk, bandwidth=sigma, estimator="block", block_size=bs, return_stderr=True, seed=s[5])
        block = {"value": float(value), "stderr": float(se), "block_size": bs}

    # Witness of every synthetic sample (subsample rows: from the fused pass; others: one more contraction).
    if m > max_exact:
        z = _concat(xks, yks)
        w = np.concatenate([np.full(len(rx), 1.0 / len(rx)), np.full(len(ry), -1.0 / len(ry))])
        witness_syn = _host(kernel_contract(yk, z, _like(w, z), bandwidth=sigma))
    else:
        witness_syn = wit_pooled[len(rx):]
    witness_real = wit_pooled[: len(rx)]

    swd = sliced_wasserstein(xk, yk, seed=s[6]) if _dist is None else _dist["swd"]
    fd = frechet_distance(xk, yk)
    prdc_values = prdc(xks, yks, k=k)
    realism = _host(realism_score(xks, yk, k=min(3, len(rx) - 1)))  # the paper's k = 3 where n allows
    realistic = realism >= 1.0

    # Per-real-sample coverage (Naeem et al.: covered when the nearest synthetic
    # sample lies inside the real sample's k-NN ball).
    radius = _host(nearest_neighbors(xks, k=k)[0])[:, k - 1]
    dn, idn = (_host(a) for a in nearest_neighbors(xks, yks, k=1))
    covered = dn[:, 0] < radius

    c2_rx = _subsample(len(rx), c2st_max, s[7])
    c2_ry = _subsample(m, c2st_max, s[8])
    if n > c2st_max or m > c2st_max:
        approximations.append(f"classifier two-sample test on {len(c2_rx)} real and {len(c2_ry)} synthetic rows "
                              f"(c2st_max={c2st_max})")
    with _sklearn_threads():
        auc, auc_sd, p_real, cdir, converged = _c2st(xs[c2_rx], ya[c2_ry], ya, c2_ry, c2st_folds, s[7])
    if not converged:
        notes.append("the C2ST logistic regression reached max_iter in some folds; its AUC may be slightly low")

    synthetic_scores = pd.DataFrame({
        "id": syn_ids,
        "row": np.arange(m),  # the input row (distributed: the global row, below)
        "witness": witness_syn,
        "realism": realism,
        "realistic": realistic,
        "p_real": p_real,
    })
    real_coverage = pd.DataFrame({
        "id": real_ids[rx],
        "row": rx,
        "covered": covered,
        "nn_distance": dn[:, 0],
        "radius": radius,
        "nearest_synthetic": syn_ids[ry[idn[:, 0]]],
        "witness": witness_real,
    })

    # Clusters of the pooled embeddings (exact-size rows of real; all synthetic).
    z = _Pooled(xs, ya)
    with _sklearn_threads():
        table, cl_labels, sil = _clusters(z, len(rx), n_clusters, max_clusters, alpha, witness_syn, realistic, s[9])
    synthetic_scores["cluster"] = cl_labels[len(rx):]
    real_coverage["cluster"] = cl_labels[: len(rx)]

    importance = profiles = None
    r2 = None
    if pdf is not None:
        with _sklearn_threads():
            importance, profiles, r2 = _parameters(pdf, witness_syn, realistic, n_bins, s[10])

    per_class = None
    if real_labels is not None:
        per_class = _per_class(xk, yk, real_labels, syn_labels, sigma, k, n_permutations, max_exact, s[11])
        big = per_class[(per_class["n_real"] > max_exact) | (per_class["n_synthetic"] > max_exact)]
        if len(big):
            approximations.append(
                f"per_class: MMD^2, its p-value and prdc of the classes with more than max_exact={max_exact} rows "
                f"({', '.join(map(str, big['label'].tolist()[:5]))}{', ...' if len(big) > 5 else ''}) use a random "
                f"subsample of max_exact rows of each set; their sliced Wasserstein and Frechet distances use all rows"
            )

    directions, dir_vecs = _directions(xa, ya, cdir, n_directions, s[6])
    map_df, map_used = _map2d(z, len(rx), cl_labels, map_method, map_points, s[9])
    map_df["id"] = np.where(map_df["set"] == "real", real_ids[rx][np.minimum(map_df["index"], len(rx) - 1)],
                            syn_ids[np.minimum(map_df["index"], m - 1)])
    map_df.loc[map_df["set"] == "real", "index"] = rx[map_df.loc[map_df["set"] == "real", "index"]]

    n_real, n_synthetic = n, m
    if _dist is not None:  # rows of the gathered subsample -> global rows
        grx, gry = _dist["rows"]
        real_coverage["row"] = grx[real_coverage["row"].to_numpy()]
        synthetic_scores["row"] = gry[synthetic_scores["row"].to_numpy()]
        if pdf is not None:  # params looked up by input row, as the map's and the tables' rows are
            pdf = pdf.set_axis(gry[: len(pdf)], axis=0)
        is_real = (map_df["set"] == "real").to_numpy()
        idx = map_df["index"].to_numpy()
        map_df["index"] = np.where(is_real, grx[np.minimum(idx, len(grx) - 1)], gry[np.minimum(idx, len(gry) - 1)])
        n_real, n_synthetic = _dist["n"], _dist["m"]
        approximations[:0] = _dist["approximations"]
    settings = {
        "kernel": "gaussian", "bandwidth": float(sigma), "n_permutations": n_permutations,
        "n_bootstrap": n_bootstrap, "ci_level": float(ci_level), "k": k, "n_clusters": n_clusters,
        "alpha": float(alpha), "max_exact": max_exact, "c2st_max": c2st_max, "c2st_folds": c2st_folds,
        "n_bins": n_bins, "map_method": map_used, "seed": seed, "device": device,
        "silhouette": {str(kk): v for kk, v in sil.items()},
    }
    return GapReport(
        n_real=n_real, n_synthetic=n_synthetic, dim=int(xa.shape[1]),
        mmd2=float(test.statistic), mmd2_ci=ci, mmd2_stderr=float(np.std(reps, ddof=1)),
        mmd2_block=block, p_value=float(test.p_value), swd=float(swd), fd=float(fd), prdc=prdc_values,
        c2st_auc=auc, c2st_auc_std=auc_sd, clusters=table, synthetic_scores=synthetic_scores,
        real_coverage=real_coverage, parameter_importance=importance, parameter_profiles=profiles,
        parameter_r2=r2, params=pdf, per_class=per_class, directions=directions, direction_vectors=dir_vecs,
        map=map_df, approximations=approximations, notes=notes, settings=settings,
    )


# ----------------------------------------------------------------------------
# compare(group=...): sharded data
# ----------------------------------------------------------------------------


def _resolve_group(group: Any):
    """(use_distributed, the group to pass to simgap.distributed) for compare's ``group``."""
    if isinstance(group, str):
        if group != "auto":
            raise ValueError(f"group must be a torch.distributed ProcessGroup, 'auto' or None; got {group!r}")
        import sys

        dist = sys.modules.get("torch.distributed")
        if dist is None or not dist.is_available() or not dist.is_initialized():
            return False, None
        return True, None  # the default group
    return True, group


def _shard_device(comm: Any, real: Any, synthetic: Any) -> Any:
    """The GPU on which compare(group=...) keeps this rank's shards: the device of
    simgap.distributed's device-resident ring (CUDA shards on the NCCL group's
    current device, a build with CUDA), else None (host copies)."""
    if not (_is_torch_tensor(real) and _is_torch_tensor(synthetic)):
        return None
    from . import distributed as sd
    from ._util.arrays import common_device

    return sd._ring_device(comm, common_device(real=real, synthetic=synthetic))


def _dtype_str(a: Any) -> str:
    """The NumPy dtype string of an array or a (float) tensor: "<f4" or "<f8"."""
    if _is_torch_tensor(a):
        return np.dtype(str(a.dtype).rpartition(".")[2]).str
    return a.dtype.str


def _cast_rows(a: Any, dtype: np.dtype) -> Any:
    """``a`` in ``dtype`` (float32 or float64), where it is."""
    if not _is_torch_tensor(a):
        return cast(a, dtype)
    import torch

    return a.to(torch.float64 if dtype == np.float64 else torch.float32)


def _to_device(a: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(a).to(device)


def _raise_remote(errors: list) -> None:
    import builtins

    for r, err in enumerate(errors):
        if err is not None:
            kind, msg = err
            cls = getattr(builtins, kind, None)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                cls = RuntimeError
            raise cls(f"rank {r}: {msg}")


def _compare_distributed(real: Any, synthetic: Any, group: Any, options: dict):
    """compare() over shards: exact MMD^2, p-value and SWD; the rest on a gathered subsample."""
    use, grp = _resolve_group(group)
    if not use:
        return _compare_impl(real, synthetic, **options)
    from . import distributed as sd

    comm = sd._Comm(grp)
    opts = dict(options)

    # This rank's shard, checked locally; every rank then learns every rank's outcome.
    def local():
        real_src, _ = _store_parts(real) if not isinstance(real, np.ndarray) else (real, None)
        syn_src, syn_meta = _store_parts(synthetic) if not isinstance(synthetic, np.ndarray) else (synthetic, None)
        dev = _shard_device(comm, real_src, syn_src)
        if dev is not None:  # checked on the GPU; only the subsample's rows reach the host
            xa, ya = device_pair(real_src, syn_src, "real", "synthetic", allow_empty=True)
        else:  # a rank may hold no rows of a set
            xa, ya = sd._as_shard(real_src, "real"), sd._as_shard(syn_src, "synthetic")
            check_same_features(xa, ya, "real", "synthetic")
        nr, mr = xa.shape[0], ya.shape[0]
        params, ids = opts["params"], opts["ids"]
        if params is None and syn_meta is not None:
            meta = dict(syn_meta)
            if ids is None and "id" in meta:
                ids = {"synthetic": meta.pop("id")}
            else:
                meta.pop("id", None)
            params = meta or None
        rid, sid = _pair_arg(ids, nr, mr, "ids")
        rlab, slab = (_missing_as_none(v) for v in _pair_arg(opts["labels"], nr, mr, "labels"))
        if (rlab is None) != (slab is None):
            raise ValueError("labels: give class labels for both real and synthetic")
        pdf = _params_frame(params, mr)
        as_positive_int(opts["k"], "k")
        as_positive_int(opts["n_permutations"], "n_permutations")
        as_positive_int(opts["max_exact"], "max_exact", minimum=2 * (opts["k"] + 1))
        _seeds(opts["seed"], 1)
        return xa, ya, rid, sid, rlab, slab, pdf, dev

    try:
        parts, err = local(), None
    except Exception as exc:  # raised on every rank below
        parts, err = None, (type(exc).__name__, str(exc))
    draw = int(np.random.SeedSequence().generate_state(1)[0])
    # Every option but the per-rank data must be the same on every rank.
    same_options = repr(sd._canonical({k: v for k, v in sorted(opts.items()) if k not in ("params", "labels", "ids")}))
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
    xa, ya, rid, sid, rlab, slab, pdf, dev = parts
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
    seed = opts["seed"] if opts["seed"] is not None else shared[0][2]  # the same on every rank
    s = _seeds(seed, 12)

    # The same global rows whatever the sharding: drawn from the seed and the global sizes.
    rx, ry = _subsample(n, max_exact, s[0]), _subsample(m, max_exact, s[1])
    r = comm.rank
    x0, y0 = int(nrs[:r].sum()), int(mrs[:r].sum())
    lx = rx[(rx >= x0) & (rx < x0 + xa.shape[0])] - x0
    ly = ry[(ry >= y0) & (ry < y0 + ya.shape[0])] - y0
    mine = (
        np.ascontiguousarray(_host(_take(xa, lx))), np.ascontiguousarray(_host(_take(ya, ly))),
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

    # The bandwidth as the single-process compare() takes it: the median heuristic
    # of the subsample (the same global rows), with the same seed.
    # Rank 0's value on every rank (BLAS threads could round differently elsewhere).
    sigma = comm.objects(median_bandwidth(X, Y, seed=s[2]))[0]
    # The headline statistics, exact over all rows (x shards in rank order, then y
    # shards); CUDA shards stay on the GPU (dev) for them.
    test = sd.mmd_test(xa, ya, n_permutations, group=grp, bandwidth=sigma, seed=s[3])
    swd = sd.sliced_wasserstein(xa, ya, group=grp, seed=s[6])

    approximations = []
    if n > max_exact or m > max_exact:
        approximations.append(
            f"distributed over {comm.world} ranks: MMD^2, its p-value and the sliced Wasserstein distance are exact "
            f"on all {n} real and {m} synthetic rows; everything else (interval, Frechet distance, prdc, C2ST, "
            f"clusters, per-class, parameters, directions, map) uses a random subsample of {len(rx)} real and "
            f"{len(ry)} synthetic rows (max_exact={max_exact}) gathered to every rank; synthetic_scores and "
            f"real_coverage cover only that subsample"
        )
    payload = None
    if r == 0:
        try:
            if dev is not None:  # rank 0 computes the subsample statistics on its GPU
                X, Y = _to_device(X, dev), _to_device(Y, dev)
            opts.update(params=params, labels=labels, ids=ids, seed=seed)
            report = _compare_impl(X, Y, _dist={
                "sigma": float(test.bandwidth[0]), "test": test, "swd": float(swd), "rows": (rx, ry),
                "n": n, "m": m, "approximations": approximations}, **opts)
            report.settings["seed"] = options["seed"]
            report.settings["world_size"] = comm.world
            payload = (report, None)
        except Exception as exc:  # every rank raises it
            payload = (None, (type(exc).__name__, str(exc)))
    box = [payload]
    comm.dist.broadcast_object_list(box, src=comm._peer(0), group=grp)
    report, err = box[0]
    _raise_remote([err])
    return report
