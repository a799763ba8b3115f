"""The importance weights of :func:`simgap.recommend`.

Kernel mean matching (``method="kmm"``): the weighted MMD^2 objective over
configuration weights and its solver (accelerated projected gradient on the
simplex).  Every kernel-vector product is one fused contraction
(:func:`simgap.kernel_contract`), computed where the data are (CPU or GPU); no
kernel matrix is formed.  The alternative (``method="classifier"``): the density
ratio of a cross-fitted logistic regression.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ._util.arrays import like, to_host
from .kernels import kernel_contract

__all__ = ["KMMObjective", "classifier_weights", "host_contract", "lipschitz", "project_simplex", "solve_kmm"]


def host_contract(a, b, w: np.ndarray, **kw) -> np.ndarray:
    """K(a, b) @ w as a float64 NumPy array, computed where a and b are (CPU or GPU)."""
    return to_host(kernel_contract(a, b, like(w, a), **kw))


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto {a >= 0, sum a = 1} (Duchi et al., 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, v.size + 1)
    cond = u - css / ind > 0
    rho = ind[cond][-1]
    theta = css[cond][-1] / rho
    return np.maximum(v - theta, 0.0)


class KMMObjective:
    """f(w) = || sum_i w_i phi(s_i) - sum_j a_j phi(r_j) ||^2 = w'Kw - 2 w'b + c, with the
    configuration tie w = G alpha; every K-vector product is one fused contraction.

    Parameters
    ----------
    syn, real : arrays, shapes (m, d) and (n, d)
        The synthetic and real samples (NumPy, or CUDA tensors on one device).
    real_w : ndarray of float64, shape (n,)
        The weights a_j of the real samples (the matching target), sum 1.
    kernel : str
    sigma : float
        The bandwidth.
    groups : ndarray of int64, shape (m,)
        The configuration of each synthetic sample.
    sizes : ndarray of float64, shape (n_configs,)
        The number of samples of each configuration.
    """

    def __init__(self, syn, real, real_w, kernel, sigma, groups, sizes):
        self.syn, self.kw = syn, dict(kernel=kernel, bandwidth=sigma)
        self.groups, self.sizes = groups, sizes
        self.b = host_contract(syn, real, real_w, **self.kw)
        self.c = float(real_w @ host_contract(real, real, real_w, **self.kw))

    def to_w(self, alpha):
        """Sample weights from configuration weights: w_i = alpha_k / size_k."""
        return alpha[self.groups] / self.sizes[self.groups]

    def to_alpha_grad(self, g):
        """A gradient over sample weights as one over configuration weights (G' g)."""
        return np.bincount(self.groups, weights=g, minlength=self.sizes.size) / self.sizes

    def K(self, w):
        """K_ss @ w."""
        return host_contract(self.syn, self.syn, w, **self.kw)

    def value(self, w, Kw, b=None, c=None):
        """f(w) from w and K_ss @ w (against another target when b and c are given)."""
        b = self.b if b is None else b
        c = self.c if c is None else c
        return float(w @ Kw - 2.0 * (w @ b) + c)


def lipschitz(obj: KMMObjective, n_groups: int, max_iter: int = 50) -> float:
    """2 lambda_max(G'KG) by power iteration (from the all-ones vector, the Perron
    vector's neighbour for a non-negative kernel), with a 2 % margin."""
    v = np.full(n_groups, 1.0 / math.sqrt(n_groups))
    lam = 0.0
    for _ in range(max_iter):
        u = obj.to_alpha_grad(obj.K(obj.to_w(v)))
        new = float(np.linalg.norm(u))
        if new <= 0:
            return 1.0
        v = u / new
        if abs(new - lam) <= 1e-4 * new:
            lam = new
            break
        lam = new
    return 2.0 * lam * 1.02


def solve_kmm(obj: KMMObjective, n_groups: int, max_iter: int, tol: float) -> tuple[np.ndarray, dict]:
    """Accelerated projected gradient (FISTA with adaptive restart, O'Donoghue & Candes 2015)
    on the simplex of configuration weights alpha.

    Stopping rule: the Frank-Wolfe duality gap  g(alpha) = grad.alpha - min_k grad_k,
    an upper bound on f(alpha) - f*, falls to ``tol * f(uniform)``; or ``max_iter``
    iterations.

    Returns
    -------
    alpha : ndarray of float64, shape (n_groups,)
    solver : dict
        ``n_iter``, ``converged``, ``duality_gap``, ``tol``, ``lipschitz``.
    """
    L = lipschitz(obj, n_groups)
    x = obj.sizes / obj.sizes.sum()          # uniform sample weights
    Kx = obj.K(obj.to_w(x))
    fx = obj.value(obj.to_w(x), Kx)
    f0 = fx
    y, Ky, t = x.copy(), Kx.copy(), 1.0
    gap = math.inf
    n_iter = 0
    threshold = tol * max(f0, 1e-300)
    for n_iter in range(1, max_iter + 1):
        grad_y = 2.0 * obj.to_alpha_grad(Ky - obj.b)
        x_new = project_simplex(y - grad_y / L)
        w_new = obj.to_w(x_new)
        Kx_new = obj.K(w_new)
        f_new = obj.value(w_new, Kx_new)
        if f_new > fx and t > 1.0:  # momentum overshoots: restart from x
            y, Ky, t = x, Kx, 1.0
            continue
        grad_x = 2.0 * obj.to_alpha_grad(Kx_new - obj.b)
        gap = float(grad_x @ x_new - grad_x.min())
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        y = x_new + beta * (x_new - x)
        Ky = Kx_new + beta * (Kx_new - Kx)
        x, Kx, fx, t = x_new, Kx_new, f_new, t_new
        if gap <= threshold:
            break
    # y may leave the simplex through momentum; x never does.
    return x, {"n_iter": n_iter, "converged": bool(gap <= threshold), "duality_gap": gap,
               "tol": tol, "lipschitz": L}


def classifier_weights(syn, real, real_w, sigma, groups, sizes, *, C, n_features, n_folds, seed):
    """Density ratio p_real / p_syn from a cross-fitted logistic regression on random
    Fourier features of the gaussian kernel of width sigma (balanced classes)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.kernel_approximation import RBFSampler
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = real_w > 0
    z = np.concatenate([real[keep], syn]).astype(np.float64)
    label = np.concatenate([np.ones(int(keep.sum())), np.zeros(syn.shape[0])])
    pipe = make_pipeline(
        RBFSampler(gamma=1.0 / (2.0 * sigma * sigma), n_components=n_features, random_state=seed),
        StandardScaler(),
        LogisticRegression(C=C, max_iter=2000, class_weight="balanced"),
    )
    folds = int(min(n_folds, keep.sum(), syn.shape[0]))
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        logit = cross_val_predict(pipe, z, label, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                  method="decision_function")
    if any(issubclass(c.category, ConvergenceWarning) for c in caught):
        notes.append("the logistic regression did not converge in 2000 iterations; the density ratio is approximate")
    ls = logit[int(keep.sum()):]
    r = np.exp(ls - ls.max())
    mean_r = np.bincount(groups, weights=r, minlength=sizes.size) / sizes
    alpha = mean_r * sizes
    alpha /= alpha.sum()
    return alpha, {"n_iter": 0, "converged": not notes, "duality_gap": float("nan"), "tol": float("nan"),
                   "folds": folds}, notes
