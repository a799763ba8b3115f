"""Why there is a gap: which simulation parameters drive it.  A random forest
predicts each synthetic sample's witness from its parameters; the permutation
importance ranks them, and per-parameter profiles (bins of numeric values,
categories otherwise) say which values look real."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .inputs import subsample

__all__ = ["parameters"]


def _is_numeric(series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series))


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


def parameters(df, score: np.ndarray, realistic: np.ndarray, max_bins: int, seed: int):
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
    rows = subsample(int(ok.sum()), 8000, seed)
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
