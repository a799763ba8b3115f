"""How large the gap is: MMD^2 with its bootstrap interval and the witness of
every row (one fused kernel contraction), the classifier two-sample test, and
the statistics of each class."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._util.arrays import concat_rows, like, take_rows, to_host
from ..kernels import kernel_contract
from ..metrics import frechet_distance, prdc
from ..mmd import mmd_test
from ..sliced import sliced_wasserstein
from .inputs import subsample

__all__ = ["witness_and_bootstrap", "c2st", "per_class"]

_CONTRACT_BYTES = 256 << 20  # output of one bootstrap contraction batch


def witness_and_bootstrap(x: Any, y: Any, sigma: float, n_bootstrap: int, seed: int):
    """Witness values of every pooled row and bootstrap replicates of the unbiased MMD^2.

    One fused contraction C = K(z, z) W over the pooled rows z = (x, y) (in column
    batches of bounded memory).  The first batch's last column holds the witness
    weights (1/n on x, -1/m on y).  Each bootstrap draw b adds two columns, [a_b; 0] and [0; c_b],
    with a_b, c_b multinomial resampling weights (counts / n, counts / m).  With
    K' = K - I (the gaussian kernel has k(z, z) = 1) the replicate is the weighted
    unbiased estimate of :func:`mmd2` with ``x_weights=a_b, y_weights=c_b``:

        a' K'_xx a / (1 - |a|^2) + c' K'_yy c / (1 - |c|^2) - 2 a' K_xy c.
    """
    n, m = x.shape[0], y.shape[0]
    N = n + m
    z = concat_rows(x, y)  # NumPy, or CUDA tensors: the contraction runs where the data are
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
        C = to_host(kernel_contract(z, None, like(W, z), bandwidth=sigma))
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


def c2st(x: np.ndarray, y: np.ndarray, y_all: np.ndarray, y_rows: np.ndarray, folds: int, seed: int):
    """Cross-validated logistic-regression AUC (real = 1) and P(real | synthetic row).

    Returns (mean AUC, std over folds, p_real for every row of y_all, direction in
    embedding space, converged, the number of folds used: ``folds``, at most the
    rows of the smaller set, as each fold needs a row of each).  Rows of y_all inside
    the fitted subsample ``y_rows`` get out-of-fold probabilities; the others the mean
    of the fold models.
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
        return float("nan"), float("nan"), np.full(y_all.shape[0], np.nan), None, True, folds
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
    return float(np.mean(aucs)), float(np.std(aucs)), p_all, direction, converged, folds


def _class_rows(lab: np.ndarray, c: Any) -> np.ndarray:
    if c is None:
        return np.flatnonzero(np.fromiter((v is None for v in lab), dtype=bool, count=lab.shape[0]))
    return np.flatnonzero(lab == c)


def per_class(x, y, lx, ly, sigma, k, n_permutations, max_exact, seed):
    """Per class: MMD^2 with its p-value and prdc on at most max_exact rows of
    each set (a seeded subsample), sliced Wasserstein and Frechet distances on
    all rows; missing labels (None) form one class."""
    import pandas as pd

    keys = sorted(set(lx.tolist()) | set(ly.tolist()), key=lambda v: (v is None, str(type(v)), "" if v is None else v))
    rows = []
    for j, c in enumerate(keys):
        xc, yc = take_rows(x, _class_rows(lx, c)), take_rows(y, _class_rows(ly, c))
        row: dict[str, Any] = {"label": c, "n_real": int(xc.shape[0]), "n_synthetic": int(yc.shape[0])}
        for key in ("mmd2", "p_value", "swd", "fd", "precision", "recall", "density", "coverage"):
            row[key] = float("nan")
        if xc.shape[0] >= 2 and yc.shape[0] >= 2:
            xq = take_rows(xc, subsample(xc.shape[0], max_exact, seed + 2 * j))
            yq = take_rows(yc, subsample(yc.shape[0], max_exact, seed + 2 * j + 1))
            t = mmd_test(xq, yq, n_permutations, bandwidth=sigma, seed=seed)
            row.update(mmd2=t.statistic, p_value=t.p_value, swd=sliced_wasserstein(xc, yc, seed=seed),
                       fd=frechet_distance(xc, yc))
            if xq.shape[0] > k and yq.shape[0] > k:
                row.update(prdc(xq, yq, k=k))
        row["note"] = ("missing from synthetic" if yc.shape[0] == 0 else
                       "synthetic only" if xc.shape[0] == 0 else "")
        rows.append(row)
    return pd.DataFrame(rows)
