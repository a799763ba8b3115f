"""Offline recommendation: which simulator configurations close the latent gap,
read off the samples already rendered.

:func:`recommend` weights the synthetic samples so that their weighted
distribution matches the real one in latent space (kernel mean matching, or a
classifier's density ratio), then turns the weights into a distribution over
the simulator's parameters: a recommended value and range per parameter,
probabilities for the categorical ones, and :meth:`Recommendation.sample`, which
draws concrete configurations for the next generation round.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ._coverage import edge_warning, unreached_real, weighted_quantile
from ._kmm import KMMObjective, classifier_weights, host_contract, solve_kmm
from ._ops.inputs import as_pair, device_of
from ._util.arrays import to_host
from ._util.checks import as_positive_int
from ._ops.spec import bandwidth_values as _bandwidth_values
from .kernels import median_bandwidth
from .space import (
    Categorical,
    Int,
    as_space,
    as_table,
    check_table,
    from_scale,
    infer_space,
    space_frame,
    space_to_dict,
    to_scale,
)

__all__ = ["ParameterRecommendation", "Recommendation", "recommend"]


_METHODS = ("kmm", "classifier")
_KMM_KERNELS = ("gaussian", "laplacian", "imq")
_LOW_ESS = 10.0


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ParameterRecommendation:
    """The recommendation for one parameter.

    Attributes
    ----------
    name : str
    kind : {"float", "int", "categorical"}
    value : float, int or a choice
        Weighted median (numeric; an int for :class:`Int`) or most probable choice.
    low, high : float or None
        The central ``interval`` range of the weighted distribution (weighted
        quantiles); None for categorical parameters.
    mean, std : float or None
        Weighted mean and standard deviation (of ``log(value)`` for log-scale
        parameters); None for categorical parameters.
    explored_low, explored_high : float or None
        The range of the explored (given) values.
    probabilities : dict or None
        Choice -> weight of the configurations with that choice (sums to 1),
        every declared choice included; None for numeric parameters.
    """

    name: str
    kind: str
    value: Any
    low: float | None
    high: float | None
    mean: float | None
    std: float | None
    explored_low: float | None
    explored_high: float | None
    probabilities: dict | None

    def to_dict(self) -> dict:
        """Plain-data form (JSON-serialisable when the choices are)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if self.probabilities is not None:
            out["probabilities"] = dict(self.probabilities)
        return out


@dataclass(frozen=True, eq=False)
class Recommendation:
    """Result of :func:`recommend`.

    Attributes
    ----------
    method : {"kmm", "classifier"}
    weights : ndarray of float64, shape (m,)
        Importance weight of each synthetic sample: non-negative, sum 1.
        Samples rendered with the same configuration share its weight equally
        (with ``tie_configs=True``).
    config_weights : ndarray of float64, shape (n_configs,)
        Weight of each distinct configuration (rows of :attr:`configs`), sum 1.
    configs : pandas.DataFrame, shape (n_configs, n_params)
        The distinct configurations, in order of first appearance.
    parameters : dict
        Parameter name -> :class:`ParameterRecommendation`.
    current_gap : float
        MMD^2 (biased V-statistic) between the real set and the synthetic set
        with uniform weights.
    predicted_gap : float
        The same MMD^2 with :attr:`weights`: the gap a new round drawn from the
        recommended distribution is predicted to have.  It is an in-sample
        estimate (the weights were fitted to these samples), so it is optimistic;
        the spread of fresh renders adds to it.
    ess : float
        Effective sample size of the weights, ``1 / sum w_i^2`` (between 1 and m).
    ess_configs : float
        The same over configurations, ``1 / sum a_k^2``.
    n_real, n_synthetic, n_configs : int
    unreached_real : ndarray of int64
        Rows of ``real`` in clusters that no synthetic sample reaches (see
        :func:`recommend`).
    warnings : tuple of str
        Where the data cannot support the answer (edge of the explored range,
        unreached real clusters, few effective samples, solver not converged).
    kernel : str
    bandwidth : float
    interval : float
    solver : dict
        ``n_iter``, ``converged``, ``duality_gap`` (an upper bound on
        ``predicted_gap - optimum`` for "kmm"), ``tol``.
    space : dict
        The declared or inferred space (name -> Float / Int / Categorical).
    """

    method: str
    weights: np.ndarray = field(repr=False)
    config_weights: np.ndarray = field(repr=False)
    configs: Any = field(repr=False)
    parameters: dict
    current_gap: float
    predicted_gap: float
    ess: float
    ess_configs: float
    n_real: int
    n_synthetic: int
    n_configs: int
    unreached_real: np.ndarray = field(repr=False)
    warnings: tuple
    kernel: str
    bandwidth: float
    interval: float
    solver: dict = field(repr=False)
    space: dict = field(repr=False)
    jitter_bandwidths: dict = field(repr=False)

    @property
    def config(self) -> dict:
        """The recommended value of every parameter: name -> value."""
        return {k: p.value for k, p in self.parameters.items()}

    def to_dict(self) -> dict:
        """Plain-data form (JSON-serialisable when the choices are)."""
        return {
            "method": self.method,
            "config": self.config,
            "parameters": {k: p.to_dict() for k, p in self.parameters.items()},
            "current_gap": self.current_gap,
            "predicted_gap": self.predicted_gap,
            "ess": self.ess,
            "ess_configs": self.ess_configs,
            "n_real": self.n_real,
            "n_synthetic": self.n_synthetic,
            "n_configs": self.n_configs,
            "unreached_real": self.unreached_real.tolist(),
            "warnings": list(self.warnings),
            "kernel": self.kernel,
            "bandwidth": self.bandwidth,
            "interval": self.interval,
            "solver": dict(self.solver),
            "space": space_to_dict(self.space),
            "weights": self.weights.tolist(),
            "config_weights": self.config_weights.tolist(),
            "configs": self.configs.to_dict(orient="list"),
        }

    def summary(self) -> str:
        """A short human-readable table (nothing is printed unless you print it)."""
        lines = [f"gap (MMD^2): current {self.current_gap:.4g} -> predicted {self.predicted_gap:.4g}; "
                 f"ESS {self.ess:.1f} of {self.n_synthetic} samples, {self.ess_configs:.1f} of "
                 f"{self.n_configs} configurations"]
        for p in self.parameters.values():
            if p.kind == "categorical":
                probs = ", ".join(f"{c!r}: {v:.2f}" for c, v in p.probabilities.items())
                lines.append(f"  {p.name}: {p.value!r}  ({probs})")
            else:
                lines.append(f"  {p.name}: {p.value:.4g}  [{p.low:.4g}, {p.high:.4g}]  "
                             f"explored [{p.explored_low:.4g}, {p.explored_high:.4g}]")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def sample(self, n: int, *, seed: Any = 0, jitter: float = 1.0):
        """Draw ``n`` configurations for the next generation round.

        Rows (distinct configurations) are drawn with replacement with
        probability :attr:`config_weights`, which keeps the correlations between
        parameters; each numeric value is then moved by Gaussian noise of the
        parameter's weighted-KDE bandwidth (:attr:`jitter_bandwidths`, on the log
        scale for ``log=True``), reflected at and clipped to the space's bounds;
        Int values are rounded.  Categorical values are those of the drawn rows,
        so they follow the weights.

        Parameters
        ----------
        n : int
            Number of configurations.
        seed : int, default 0
            Seed of ``numpy.random.default_rng``.
        jitter : float, default 1.0
            Multiplies the bandwidths (0 resamples the explored configurations as they are).

        Returns
        -------
        pandas.DataFrame, shape (n, n_params)
            Float columns float64, Int columns int64, categorical columns object.
        """

        n = as_positive_int(n, "n")
        if isinstance(jitter, bool) or not isinstance(jitter, numbers.Real) or not jitter >= 0 \
                or not math.isfinite(jitter):
            raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
        rng = np.random.default_rng(seed)
        rows = rng.choice(self.n_configs, size=n, p=self.config_weights)
        cols: dict[str, Any] = {}
        for name, p in self.space.items():
            v = self.configs[name].to_numpy()[rows]
            if isinstance(p, Categorical):
                col = np.empty(n, dtype=object)
                col[:] = list(v)
                cols[name] = col
                continue
            t = to_scale(v.astype(np.float64), p)
            lo, hi = to_scale(np.array([p.low, p.high], dtype=np.float64), p)
            if isinstance(p, Int):  # a unit cell around each integer
                cell = np.array([p.low - 0.5, p.high + 0.5])
                lo, hi = to_scale(np.maximum(cell, 0.5) if p.log else cell, p)
            h = self.jitter_bandwidths[name] * float(jitter)
            out = v.astype(np.float64)
            if h > 0 and hi > lo:
                out = from_scale(_reflect(t + rng.normal(0.0, h, size=n), lo, hi), p)
            if isinstance(p, Int):
                cols[name] = np.clip(np.round(out), p.low, p.high).astype(np.int64)
            else:
                cols[name] = np.clip(out, p.low, p.high)
        return space_frame(cols, self.space)

    def density(self, name: str, *, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """The weighted kernel density of a numeric parameter, for plots.

        Parameters
        ----------
        name : str
            A Float or Int parameter.
        n_points : int, default 200
            Grid points across the space's bounds.

        Returns
        -------
        grid : ndarray, shape (n_points,)
        density : ndarray, shape (n_points,)
            Weighted Gaussian KDE with the bandwidth of :meth:`sample`, reflected
            at the bounds (the density :meth:`sample` draws from), in the
            parameter's own units (transformed back from the log scale).
        """
        if name not in self.space:
            raise ValueError(f"name {name!r} is not a parameter; expected one of {list(self.space)}")
        p = self.space[name]
        if isinstance(p, Categorical):
            raise ValueError(f"name {name!r} is categorical; see parameters[{name!r}].probabilities")
        n_points = as_positive_int(n_points, "n_points", minimum=2)
        grid = np.exp(np.linspace(np.log(p.low), np.log(p.high), n_points)) if p.log \
            else np.linspace(p.low, p.high, n_points)
        t = to_scale(self.configs[name].to_numpy().astype(np.float64), p)
        tg = to_scale(grid, p)
        h = max(self.jitter_bandwidths[name], 1e-12 * max(1.0, float(np.abs(tg).max())))
        lo, hi = float(tg[0]), float(tg[-1])
        dens = np.zeros(n_points)
        for centres in (t, 2 * lo - t, 2 * hi - t):  # reflected at the bounds, as in sample()
            z = (tg[:, None] - centres[None, :]) / h
            dens += np.exp(-0.5 * z * z) @ self.config_weights / (h * math.sqrt(2 * math.pi))
        if p.log:
            dens = dens / grid
        return grid, dens


# --------------------------------------------------------------------------- helpers


def _reflect(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = hi - lo
    u = np.mod(t - lo, 2.0 * span)
    return lo + np.where(u > span, 2.0 * span - u, u)


def _group_codes(columns: Mapping[str, np.ndarray], m: int) -> np.ndarray:
    """Index of each row's distinct configuration, numbered by first appearance."""
    codes = []
    for col in columns.values():
        if col.dtype.kind in "iuf":
            _, inv = np.unique(col, return_inverse=True)
        else:
            lookup: dict = {}
            inv = np.array([lookup.setdefault(v, len(lookup)) for v in col.tolist()], dtype=np.int64)
        codes.append(inv.reshape(-1))
    stacked = np.stack(codes, axis=1) if codes else np.zeros((m, 1), dtype=np.int64)
    _, first, inv = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    # renumber by first appearance
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inv]


def _check_data(real: Any, synthetic: Any) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """(real, synthetic) checked, in one dtype, where the kernel sums and neighbours run
    (CUDA tensors stay on their GPU), and their host copies (for the classifier)."""
    rk, sk = as_pair(real, synthetic, "real", "synthetic", device=device_of(real=real, synthetic=synthetic))
    ra, sa = to_host(rk), to_host(sk)
    if ra.shape[0] < 2:
        raise ValueError("real has 1 row; at least 2 are needed")
    if sa.shape[0] < 2:
        raise ValueError("synthetic has 1 row; at least 2 are needed")
    return rk, sk, ra, sa


def _check_params(params: Any, space: Any, m: int) -> tuple[dict, dict]:
    """The parameter space (declared, or inferred from ``params``) and the checked columns of ``params``."""
    table = as_table(params, "params")
    rows = next(iter(table.values())).shape[0]
    if rows != m:
        raise ValueError(f"params has {rows} rows but synthetic has {m}; give one row per synthetic sample")
    if space is None:
        space_ = infer_space(table, "params")
    else:
        space_ = as_space(space, "space")
    return space_, check_table(table, space_, "params", "space")


def _check_options(method, kernel, bandwidth, tie_configs, exclude_unreached, interval, max_iter, tol, C,
                   n_features, n_folds, rk, sk, seed) -> tuple[str, str, float, int, int, int]:
    """The options checked: (method, kernel, bandwidth, max_iter, n_features, n_folds), the
    bandwidth resolved ("median": the median heuristic of both sets pooled)."""
    if not isinstance(method, str) or method.lower() not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    method = method.lower()
    if not isinstance(kernel, str) or kernel.lower() not in _KMM_KERNELS:
        raise ValueError(f"kernel must be one of {_KMM_KERNELS} (a positive characteristic kernel); got {kernel!r}")
    kernel = kernel.lower()
    if method == "classifier" and kernel != "gaussian":
        raise ValueError("kernel: method='classifier' uses gaussian random features; leave kernel='gaussian'")
    values = _bandwidth_values(bandwidth, kernel)
    if values is not None and len(values) != 1:
        raise ValueError("bandwidth must be 'median' or one positive number")
    sigma = float(values[0]) if values is not None else median_bandwidth(rk, sk, seed=seed)
    for flag, nm in ((tie_configs, "tie_configs"), (exclude_unreached, "exclude_unreached")):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{nm} must be a bool, got {type(flag).__name__}")
    if isinstance(interval, bool) or not isinstance(interval, numbers.Real) or not 0 < interval < 1:
        raise ValueError(f"interval must be a number in (0, 1), got {interval!r}")
    max_iter = as_positive_int(max_iter, "max_iter")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(C, bool) or not isinstance(C, numbers.Real) or not C > 0:
        raise ValueError(f"C must be a positive number, got {C!r}")
    n_features = as_positive_int(n_features, "n_features")
    n_folds = as_positive_int(n_folds, "n_folds", minimum=2)
    return method, kernel, sigma, max_iter, n_features, n_folds


def _configurations(columns: Mapping[str, np.ndarray], space_: Mapping, m: int,
                    tie_configs: bool) -> tuple[np.ndarray, np.ndarray, Any]:
    """(groups, sizes, configs): the configuration of each sample (each sample its own
    without ``tie_configs``), the sample count of each configuration, and the table of
    configurations (the first sample's parameters)."""
    if tie_configs:
        groups = _group_codes(columns, m)
    else:
        groups = np.arange(m, dtype=np.int64)
    n_groups = int(groups.max()) + 1
    sizes = np.bincount(groups, minlength=n_groups).astype(np.float64)
    first = np.full(n_groups, m, dtype=np.int64)
    np.minimum.at(first, groups, np.arange(m))
    configs = space_frame({
        k: (col[first].astype(np.int64) if isinstance(space_[k], Int) else col[first])
        for k, col in columns.items()
    }, space_)
    return groups, sizes, configs


def _matching_target(rk, sk, exclude_unreached: bool, notes: list) -> tuple[np.ndarray, np.ndarray]:
    """(unreached, real_w): the real rows that no synthetic sample reaches (noted), and the
    weights of the real rows in the matching target (uniform; zero on the unreached rows
    with ``exclude_unreached``)."""
    n = rk.shape[0]
    unreached, clusters = unreached_real(rk, sk)
    if clusters:
        sizes_txt = ", ".join(str(c.size) for c in clusters[:5])
        notes.append(
            f"{unreached.size} real samples ({unreached.size / n:.0%}) in {len(clusters)} cluster(s) "
            f"(sizes {sizes_txt}) lie farther from every synthetic sample than real samples lie from each "
            "other: no explored configuration reaches them (a feature the simulator cannot render?); "
            "see unreached_real")
    real_w = np.full(n, 1.0 / n)
    if exclude_unreached and unreached.size and unreached.size < n:
        real_w[unreached] = 0.0
        real_w /= real_w.sum()
    return unreached, real_w


def _gaps(obj: KMMObjective, rk, w: np.ndarray, full_target: bool) -> tuple[float, float]:
    """(current, predicted): MMD^2 between the whole real set and the synthetic set with
    uniform and with the fitted weights ``w``; ``full_target`` when the matching target
    left rows out."""
    n, m = rk.shape[0], w.shape[0]
    if full_target:
        full = np.full(n, 1.0 / n)
        b_full = host_contract(obj.syn, rk, full, **obj.kw)
        c_full = float(full @ host_contract(rk, rk, full, **obj.kw))
    else:
        b_full, c_full = obj.b, obj.c
    u = np.full(m, 1.0 / m)
    current = max(obj.value(u, obj.K(u), b_full, c_full), 0.0)
    predicted = max(obj.value(w, obj.K(w), b_full, c_full), 0.0)
    return float(current), float(predicted)


def _categorical_summary(name: str, p: Categorical, col: np.ndarray, alpha: np.ndarray, declared: bool,
                         notes: list) -> ParameterRecommendation:
    """The weight of each choice; choices never rendered are noted (for a declared space)."""
    probs = {c: 0.0 for c in p.choices}
    for v, a in zip(col.tolist(), alpha):
        probs[v] += float(a)
    best = max(probs, key=probs.get)
    unexplored = [c for c in p.choices if c not in set(col.tolist())]
    if unexplored and declared:
        notes.append(f"{name}: the choices {unexplored} were never rendered; nothing is known about them")
    return ParameterRecommendation(name, "categorical", best, None, None, None, None, None, None, probs)


def _numeric_summary(name: str, p: Any, col: np.ndarray, alpha: np.ndarray, ess_configs: float,
                     n_groups: int, d_numeric: int, interval: float,
                     notes: list) -> tuple[ParameterRecommendation, float]:
    """The weighted median, range, mean and spread of a Float or Int parameter, and the
    bandwidth :meth:`Recommendation.sample` jitters it with; an edge of the explored range
    that holds the weight is noted."""
    q_lo, q_hi = 0.5 - interval / 2, 0.5 + interval / 2
    v = col.astype(np.float64)
    t = to_scale(v, p)
    med, lo, hi = from_scale(weighted_quantile(t, alpha, np.array([0.5, q_lo, q_hi])), p)
    mean = float(alpha @ t)
    std = float(math.sqrt(max(alpha @ (t - mean) ** 2, 0.0)))
    std_u = float(t.std())
    h = std * ess_configs ** (-1.0 / (d_numeric + 4))
    floor = std_u * n_groups ** (-1.0 / max(d_numeric, 1))
    jitter = float(max(h, floor))
    if isinstance(p, Int):  # whole numbers: the interval widened to integers that hold the value
        med = int(np.clip(round(med), p.low, p.high))
        lo, hi = min(math.floor(lo), med), max(math.ceil(hi), med)
    rec = ParameterRecommendation(
        name, p.kind, med if isinstance(p, Int) else float(med), float(lo), float(hi), mean, std,
        float(v.min()), float(v.max()), None)
    msg = edge_warning(name, p, v, alpha, ess_configs)
    if msg:
        notes.append(msg)
    return rec, jitter


def _summaries(space_: Mapping, configs: Any, alpha: np.ndarray, ess_configs: float, interval: float,
               declared: bool, notes: list) -> tuple[dict, dict]:
    """(parameters, jitter bandwidths) of every parameter, from the configuration weights."""
    d_numeric = sum(not isinstance(p, Categorical) for p in space_.values())
    parameters: dict[str, ParameterRecommendation] = {}
    jitter: dict[str, float] = {}
    for name, p in space_.items():
        col = configs[name].to_numpy()
        if isinstance(p, Categorical):
            parameters[name] = _categorical_summary(name, p, col, alpha, declared, notes)
        else:
            parameters[name], jitter[name] = _numeric_summary(name, p, col, alpha, ess_configs, alpha.size,
                                                              d_numeric, interval, notes)
    return parameters, jitter


# --------------------------------------------------------------------------- public function


def recommend(
    real: Any,
    synthetic: Any,
    params: Any,
    *,
    space: Any = None,
    method: str = "kmm",
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    tie_configs: bool = True,
    exclude_unreached: bool = False,
    interval: float = 0.8,
    max_iter: int = 1000,
    tol: float = 1e-3,
    C: float = 1.0,
    n_features: int = 256,
    n_folds: int = 5,
    seed: Any = 0,
) -> Recommendation:
    r"""Recommend simulator configurations that close the latent gap, from samples
    already rendered.

    1. **Weights.**  ``method="kmm"`` (kernel mean matching, Huang et al. 2007;
       Gretton et al. 2009) solves

       .. math::
           \min_{w \ge 0,\ \sum w = 1}\ \mathrm{MMD}^2_w
           = w^\top K_{ss} w - \frac{2}{n} w^\top K_{sr} 1 + \frac{1}{n^2} 1^\top K_{rr} 1

       (the biased MMD^2 between the real set and the weighted synthetic set)
       by accelerated projected gradient on the simplex (FISTA with adaptive
       restart; step 1 / L with L = 2 lambda_max(K_ss) from a power iteration).
       Each iteration is one fused contraction ``K_ss @ w``
       (:func:`simgap.kernel_contract`); no kernel matrix is formed.  Stopping
       rule: the Frank-Wolfe duality gap ``grad . w - min_i grad_i``, an upper
       bound on the distance to the optimum, falls below ``tol`` times the
       current (uniform-weight) gap, or ``max_iter`` iterations.

       ``method="classifier"`` estimates the density ratio p_real / p_syn with a
       logistic regression (balanced classes, ``C``) on ``n_features`` random
       Fourier features of the same gaussian kernel, cross-fitted over
       ``n_folds`` folds so that no sample is scored by a model trained on it;
       w_i is proportional to exp(logit_i).  Faster for large m, but it does not
       minimise the gap directly.

       With ``tie_configs=True`` samples rendered with the same configuration
       (identical parameter rows) share one weight: a new round renders whole
       configurations, not chosen samples, so the optimisation runs over
       configuration weights a_k (w_i = a_k / size_k).

    2. **Parameter distribution.**  Per numeric parameter the weighted median
       and the central ``interval`` range (weighted quantiles, on the log scale
       for ``log=True``); per categorical parameter the weight of each choice;
       :meth:`Recommendation.sample` draws joint configurations.

    3. **Diagnostics** (:attr:`Recommendation.warnings`):

       - *edge of the explored range*: the weight piles up on the top (bottom)
         10 % of the explored configurations of a numeric parameter (mass per
         configuration >= 2x uniform and >= 1.5x the band next to it), or the
         weighted median lies in the outer 15 % of the explored span, in both
         cases with an excess >= 2 standard errors over uniform weights at the
         configurations' effective sample size -> "extend the range of X upward";
       - *unreached real clusters*: real rows whose nearest synthetic sample is
         more than twice as far as their k-th nearest real neighbour
         (k = clip(ceil(5 n / m), 5, 50)) and as the median real-to-synthetic
         nearest distance, in clusters of real neighbours of at least
         max(5, 2 % of n) rows: no explored parameter value produces them (e.g.
         a nuisance the simulator cannot render).  ``exclude_unreached=True`` leaves them out of
         the matching target so they do not pull the weights (the gaps are still
         reported against the full real set);
       - fewer than 10 effective configurations; a solver that stopped at ``max_iter``.

    Parameters
    ----------
    real : array_like, shape (n, d)
        Real samples in latent space (NumPy or torch; float32 or float64).
    synthetic : array_like, shape (m, d)
        Synthetic samples in the same space.  CUDA tensors (both on one
        device): the kernel contractions of the KMM solver, the median
        bandwidth and the nearest-neighbour search for unreached real samples
        run on that GPU; ``method="classifier"`` fits on a host copy.
    params : table with m rows
        The configuration each synthetic sample was rendered with: a pandas
        DataFrame, a dict of columns, a list of dicts or a structured array.
    space : dict, optional
        Name -> :class:`simgap.Float` / :class:`simgap.Int` /
        :class:`simgap.Categorical` (or a ``(low, high)`` tuple / a list of
        choices).  Only these columns of ``params`` are used, and their values
        must lie in the declared bounds.  Default: every column, integer columns
        as Int, real ones as Float over the explored range, others as Categorical.
    method : {"kmm", "classifier"}, default "kmm"
    kernel : {"gaussian", "laplacian", "imq"}, default "gaussian"
    bandwidth : "median" or float, default "median"
        "median" is :func:`simgap.median_bandwidth` of the real and synthetic
        sets pooled: wide enough that real samples far from every synthetic one
        still pull the weights.  Pass ``SimOptimizer(...).bandwidth`` to compare
        gaps with a closed-loop study.
    tie_configs : bool, default True
        One weight per distinct configuration (see above).
    exclude_unreached : bool, default False
        Leave the unreached real rows out of the matching target.
    interval : float in (0, 1), default 0.8
        Probability of the recommended range (0.8: the 10 % and 90 % quantiles).
    max_iter : int, default 1000
        KMM iterations (each one contraction over the m x m synthetic pairs).
    tol : float, default 1e-3
        KMM stopping tolerance, relative to the current gap.
    C : float, default 1.0
        Inverse regularisation of the logistic regression (classifier).
    n_features : int, default 256
        Random Fourier features (classifier).
    n_folds : int, default 5
        Cross-fitting folds (classifier).
    seed : int, default 0
        Seed of the median bandwidth's subsample and of the classifier's features and folds.

    Returns
    -------
    Recommendation

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> shift = rng.uniform(-2, 2, size=300)                 # explored parameter values
    >>> synthetic = rng.normal(size=(300, 2)) + shift[:, None]
    >>> real = rng.normal(size=(200, 2)) + 0.7               # rendered at shift = 0.7
    >>> rec = simgap.recommend(real, synthetic, {"shift": shift})
    >>> bool(abs(rec.config["shift"] - 0.7) < 0.3), bool(rec.predicted_gap < rec.current_gap)
    (True, True)
    >>> rec.sample(4, seed=0).shape
    (4, 1)
    """

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    rk, sk, ra, sa = _check_data(real, synthetic)
    n, m = ra.shape[0], sa.shape[0]
    space_, columns = _check_params(params, space, m)
    method, kernel, sigma, max_iter, n_features, n_folds = _check_options(
        method, kernel, bandwidth, tie_configs, exclude_unreached, interval, max_iter, tol, C,
        n_features, n_folds, rk, sk, seed)
    groups, sizes, configs = _configurations(columns, space_, m, tie_configs)
    n_groups = sizes.size

    # 1. the weights
    notes: list[str] = []
    unreached, real_w = _matching_target(rk, sk, exclude_unreached, notes)
    obj = KMMObjective(sk, rk, real_w, kernel, sigma, groups, sizes)
    if method == "kmm":
        alpha, solver = solve_kmm(obj, n_groups, max_iter, tol)
        if not solver["converged"]:
            notes.append(f"the KMM solver stopped after {max_iter} iterations with duality gap "
                         f"{solver['duality_gap']:.3g} (tol x current gap = "
                         f"{tol * obj.value(obj.to_w(sizes / m), obj.K(obj.to_w(sizes / m))):.3g}); "
                         "raise max_iter for exact weights")
    else:
        alpha, solver, extra = classifier_weights(sa, ra, real_w, sigma, groups, sizes, C=float(C),
                                                  n_features=n_features, n_folds=n_folds, seed=seed)
        notes += extra
    alpha = np.maximum(alpha, 0.0)
    alpha /= alpha.sum()
    w = obj.to_w(alpha)
    current, predicted = _gaps(obj, rk, w, full_target=bool(exclude_unreached and unreached.size))
    ess = float(1.0 / np.sum(w * w))
    ess_configs = float(1.0 / np.sum(alpha * alpha))
    if ess_configs < _LOW_ESS:
        notes.append(f"the weights rest on {ess_configs:.1f} effective configurations (of {n_groups}): "
                     "the recommendation is fragile; render more configurations around it")

    # 2. the parameter distribution
    parameters, jitter = _summaries(space_, configs, alpha, ess_configs, interval, space is not None, notes)
    return Recommendation(
        method=method, weights=w, config_weights=alpha, configs=configs, parameters=parameters,
        current_gap=current, predicted_gap=predicted, ess=ess, ess_configs=ess_configs,
        n_real=n, n_synthetic=m, n_configs=n_groups, unreached_real=unreached, warnings=tuple(notes),
        kernel=kernel, bandwidth=sigma, interval=float(interval), solver=solver, space=space_,
        jitter_bandwidths=jitter,
    )
