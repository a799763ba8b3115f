"""Offline recommendation: kernel mean matching weights, the parameter distribution,
sampling and the diagnostics (edge of range, unreached real clusters)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simgap
from simgap.simulators import GaussianMixtureSimulator

scipy_optimize = pytest.importorskip("scipy.optimize")

TRUE = {"mean_a": 1.5, "mean_b": -1.0, "scale": 0.5, "weight": 0.4, "noise": "gaussian"}
# Means vary; scale, weight and noise fixed: a mixture of configurations cannot fake the means.
SPACE = {"mean_a": simgap.Float(-3, 3), "mean_b": simgap.Float(-3, 3), "scale": simgap.Float(0.5, 0.5),
         "weight": simgap.Float(0.4, 0.4), "noise": ["gaussian"]}


@pytest.fixture(scope="module")
def gmm():
    sim = GaussianMixtureSimulator(space=SPACE, true_params=TRUE, nuisance=0.1)
    real = sim.real(300, seed=100)
    params, syn = sim.design(150, 4, seed=3)
    return sim, real, params, syn


@pytest.fixture(scope="module")
def gmm_rec(gmm):
    sim, real, params, syn = gmm
    return simgap.recommend(real, syn, params, space=SPACE)


def _shift_problem(rng, n=200, m=240, true=0.7):
    shift = rng.uniform(-2, 2, size=m)
    syn = rng.normal(size=(m, 2)) + shift[:, None]
    real = rng.normal(size=(n, 2)) + true
    return real, syn, shift


def test_weights_are_a_distribution_and_reduce_the_gap(rng):
    real, syn, shift = _shift_problem(rng)
    rec = simgap.recommend(real, syn, {"shift": shift})
    w = rec.weights
    assert w.shape == (240,) and (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    assert abs(rec.config_weights.sum() - 1) < 1e-12
    assert rec.predicted_gap < 0.2 * rec.current_gap
    sigma = simgap.median_bandwidth(real, syn)
    assert rec.bandwidth == pytest.approx(sigma)
    ref_cur = simgap.mmd2(real, syn, estimator="biased", bandwidth=sigma)
    ref_pred = simgap.mmd2(real, syn, y_weights=w, estimator="biased", bandwidth=sigma)
    assert rec.current_gap == pytest.approx(ref_cur, rel=1e-7, abs=1e-12)
    assert rec.predicted_gap == pytest.approx(ref_pred, rel=1e-6, abs=1e-9)
    assert 1 <= rec.ess <= 240 and rec.solver["converged"]
    assert abs(rec.config["shift"] - 0.7) < 0.3


def test_kmm_matches_brute_force_qp(rng):
    """Tiny problem: the accelerated projected gradient reaches scipy's SLSQP optimum."""
    x_real = rng.normal(size=(10, 2))
    x_syn = rng.normal(0.5, 1.2, size=(12, 2))
    sigma = 1.3
    rec = simgap.recommend(x_real, x_syn, {"i": np.arange(12)}, bandwidth=sigma, tol=1e-10, max_iter=20000)
    K = simgap.kernel_matrix(np.vstack([x_syn, x_real]), bandwidth=sigma)
    kss, ksr, krr = K[:12, :12], K[:12, 12:], K[12:, 12:]
    b, c = ksr.mean(axis=1), krr.mean()

    def f(w):
        return w @ kss @ w - 2 * w @ b + c

    res = scipy_optimize.minimize(f, np.full(12, 1 / 12), jac=lambda w: 2 * kss @ w - 2 * b, method="SLSQP",
                                  bounds=[(0, 1)] * 12,
                                  constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                                  options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success
    assert rec.predicted_gap == pytest.approx(f(res.x), abs=1e-9)
    assert rec.predicted_gap <= f(res.x) + 1e-9
    np.testing.assert_allclose(rec.weights, np.clip(res.x, 0, None), atol=2e-3)


def test_samples_of_one_configuration_share_its_weight(rng):
    shift = np.repeat(rng.uniform(-2, 2, size=40), 5)
    syn = rng.normal(size=(200, 2)) + shift[:, None]
    real = rng.normal(size=(150, 2)) + 0.5
    rec = simgap.recommend(real, syn, {"shift": shift})
    assert rec.n_configs == 40 and rec.configs.shape == (40, 1)
    w = rec.weights.reshape(40, 5)
    np.testing.assert_allclose(w, w[:, :1].repeat(5, axis=1))
    untied = simgap.recommend(real, syn, {"shift": shift}, tie_configs=False)
    assert untied.n_configs == 200 and untied.predicted_gap <= rec.predicted_gap + 1e-9


def test_parameter_recovery_on_the_gaussian_mixture(gmm_rec):
    """Stated tolerance: each mean within 0.75 (1/8 of its explored range [-3, 3])."""
    c = gmm_rec.config
    assert abs(c["mean_a"] - TRUE["mean_a"]) < 0.75
    assert abs(c["mean_b"] - TRUE["mean_b"]) < 0.75
    for name in ("mean_a", "mean_b"):
        p = gmm_rec.parameters[name]
        assert p.low <= p.value <= p.high and p.explored_low >= -3 and p.explored_high <= 3
    assert gmm_rec.predicted_gap < 0.3 * gmm_rec.current_gap


def test_unreached_real_cluster_is_reported(gmm, gmm_rec):
    sim, real, params, syn = gmm
    nuisance = np.flatnonzero(real[:, 2] > 4)
    assert nuisance.size == 30
    np.testing.assert_array_equal(gmm_rec.unreached_real, nuisance)
    assert any("no explored configuration reaches them" in w for w in gmm_rec.warnings)
    clean = GaussianMixtureSimulator(space=SPACE, true_params=TRUE, nuisance=0.0)
    rec = simgap.recommend(clean.real(300, seed=100), syn, params, space=SPACE)
    assert rec.unreached_real.size == 0 and not any("reaches" in w for w in rec.warnings)


def test_exclude_unreached_reports_gaps_against_the_full_real_set(gmm):
    sim, real, params, syn = gmm
    rec = simgap.recommend(real, syn, params, space=SPACE, exclude_unreached=True)
    ref = simgap.mmd2(real, syn, y_weights=rec.weights, estimator="biased", bandwidth=rec.bandwidth)
    assert rec.predicted_gap == pytest.approx(ref, rel=1e-6)


def test_edge_of_range_warning_fires_when_theta_star_is_outside():
    sim = GaussianMixtureSimulator(space=SPACE, true_params=TRUE, nuisance=0.0)
    real = sim.real(300, seed=7)
    narrow = {**SPACE, "mean_a": simgap.Float(-3, 0.5)}  # theta* = 1.5 lies above
    params, syn = sim.design(150, 4, seed=2, space=narrow)
    rec = simgap.recommend(real, syn, params, space=SPACE)
    edge = [w for w in rec.warnings if w.startswith("extend the range of mean_a upward")]
    assert edge, rec.warnings
    assert "space allows 3" in edge[0]
    assert not any("mean_b" in w for w in rec.warnings if w.startswith("extend"))
    params_in, syn_in = sim.design(150, 4, seed=2)
    inside = simgap.recommend(real, syn_in, params_in, space=SPACE)
    assert not any(w.startswith("extend") for w in inside.warnings), inside.warnings


def test_edge_warning_downward(rng):
    shift = rng.uniform(0.0, 3.0, size=300)
    syn = rng.normal(size=(300, 1)) * 0.3 + shift[:, None]
    real = rng.normal(size=(200, 1)) * 0.3 - 1.0
    rec = simgap.recommend(real, syn, {"shift": shift})
    assert any(w.startswith("extend the range of shift downward") for w in rec.warnings), rec.warnings


def test_categorical_parameters(rng):
    side = rng.choice(["left", "right", "middle"], size=300)
    width = rng.integers(1, 4, size=300)
    centre = np.select([side == "left", side == "right"], [-2.0, 2.0], 0.0)
    syn = rng.normal(size=(300, 2)) * (0.3 * width[:, None]) + centre[:, None]
    real = rng.normal(size=(200, 2)) * 0.6 + 2.0  # right, width 2
    rec = simgap.recommend(real, syn, {"side": side, "width": width})
    p = rec.parameters["side"]
    assert p.kind == "categorical" and p.value == "right" and p.probabilities["right"] > 0.9
    assert abs(sum(p.probabilities.values()) - 1) < 1e-12 and p.low is None
    assert rec.parameters["width"].kind == "int" and rec.config["width"] == 2
    table = rec.sample(400, seed=1)
    assert set(table["side"]) <= {"left", "right", "middle"} and (table["side"] == "right").mean() > 0.85
    assert table["width"].dtype == np.int64 and table["width"].between(1, 3).all()


def test_sample_is_reproducible_clipped_and_keeps_types():
    rng = np.random.default_rng(5)
    a = rng.uniform(0.1, 10.0, size=200)
    n = rng.integers(0, 6, size=200)
    syn = np.stack([np.log(a), n], axis=1) + rng.normal(size=(200, 2)) * 0.2
    real = np.stack([np.full(100, np.log(9.0)), np.full(100, 5.0)], axis=1) + rng.normal(size=(100, 2)) * 0.2
    space = {"a": simgap.Float(0.1, 10.0, log=True), "n": simgap.Int(0, 5)}
    rec = simgap.recommend(real, syn, {"a": a, "n": n}, space=space)
    t1, t2 = rec.sample(300, seed=3), rec.sample(300, seed=3)
    assert t1.equals(t2) and not t1.equals(rec.sample(300, seed=4))
    assert t1["a"].between(0.1, 10.0).all() and t1["n"].between(0, 5).all() and t1["n"].dtype == np.int64
    assert rec.sample(50, seed=0, jitter=0.0)["a"].isin(rec.configs["a"]).all()
    grid, dens = rec.density("a")
    assert grid[0] == pytest.approx(0.1) and grid[-1] == pytest.approx(10.0)
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=0.1)


def test_classifier_method(rng):
    real, syn, shift = _shift_problem(rng, n=300, m=400)
    rec = simgap.recommend(real, syn, {"shift": shift}, method="classifier", seed=0)
    assert rec.method == "classifier" and (rec.weights >= 0).all() and abs(rec.weights.sum() - 1) < 1e-12
    assert abs(rec.config["shift"] - 0.7) < 0.5 and rec.predicted_gap < rec.current_gap


def test_to_dict_and_summary(gmm_rec):
    d = gmm_rec.to_dict()
    json.dumps(d)
    assert d["config"] == gmm_rec.config and len(d["weights"]) == gmm_rec.n_synthetic
    assert "current" in gmm_rec.summary()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(method="svm"), ValueError, "method must be one of"),
    (dict(kernel="linear"), ValueError, "kernel must be one of"),
    (dict(bandwidth=-1.0), ValueError, "bandwidth must be positive"),
    (dict(interval=1.5), ValueError, "interval must be a number in"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1"),
    (dict(tol=0), ValueError, "tol must be a positive number"),
    (dict(space={"shift": (0.0, 1.0)}), ValueError, r"params\['shift'\] has values in .* outside space\['shift'\]"),
    (dict(space={"other": (0.0, 1.0)}), ValueError, "params has no column 'other'"),
    (dict(tie_configs="yes"), TypeError, "tie_configs must be a bool"),
])
def test_bad_options_name_the_argument(rng, kwargs, exc, match):
    real, syn, shift = _shift_problem(rng, n=20, m=30)
    with pytest.raises(exc, match=match):
        simgap.recommend(real, syn, {"shift": shift}, **kwargs)


def test_bad_data_names_the_argument(rng):
    real, syn, shift = _shift_problem(rng, n=20, m=30)
    with pytest.raises(ValueError, match="params has 29 rows but synthetic has 30"):
        simgap.recommend(real, syn, {"shift": shift[:-1]})
    with pytest.raises(ValueError, match="real has 2 columns but synthetic has 3"):
        simgap.recommend(real, np.hstack([syn, syn[:, :1]]), {"shift": shift})
    bad = real.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="real contains NaN"):
        simgap.recommend(bad, syn, {"shift": shift})
    with pytest.raises(TypeError, match="params must be a pandas DataFrame"):
        simgap.recommend(real, syn, shift)
    with pytest.raises(ValueError, match=r"params\['shift'\] contains NaN"):
        simgap.recommend(real, syn, {"shift": np.where(np.arange(30) == 2, np.nan, shift)})


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

def _shifted(seed=0, m=300):
    rng = np.random.default_rng(seed)
    u = rng.uniform(-2, 2, m)
    return rng.normal(size=(200, 2)) + 0.7, rng.normal(size=(m, 2)) + u[:, None], u


def test_none_is_a_categorical_choice_like_any_other():
    """pandas >= 3 stores strings and None as its str dtype, turning None into NaN
    (recommend raised KeyError: nan); the configurations keep None."""
    real, syn, u = _shifted()
    texture = [None if v > 1 else "wood" for v in u]
    rec = simgap.recommend(real, syn, {"shift": u, "texture": texture})
    probs = rec.parameters["texture"].probabilities
    assert set(probs) == {None, "wood"} and sum(probs.values()) == pytest.approx(1.0)
    assert set(rec.configs["texture"]) == {None, "wood"}
    drawn = rec.sample(200, seed=0)["texture"]
    assert set(drawn) <= {None, "wood"} and drawn.isna().sum() == sum(v is None for v in drawn)


def test_bounds_smaller_than_the_rounding_slack_are_enforced():
    """The slack for rounding was absolute (1e-9), wider than a range like
    [1e-12, 2e-10]: a 0 in a log parameter got in and made the summaries NaN."""
    real, syn, u = _shifted()
    lr = 1e-12 + (u + 2) / 4 * 1e-10
    space = {"lr": simgap.Float(1e-12, 2e-10, log=True)}
    rec = simgap.recommend(real, syn, {"lr": lr}, space=space)
    p = rec.parameters["lr"]
    assert all(np.isfinite([p.value, p.low, p.high, p.mean, p.std])) and 1e-12 <= p.low <= p.value <= p.high
    for bad in (0.0, -5e-10, 5e-10):
        with pytest.raises(ValueError, match="outside space"):
            simgap.recommend(real, syn, {"lr": np.r_[bad, lr[1:]]}, space=space)


def test_an_int_parameter_gets_an_integer_interval_holding_its_value():
    rng = np.random.default_rng(1)
    k = rng.integers(0, 4, 400)
    syn = rng.normal(size=(400, 2))
    syn[:, 0] += k
    real = rng.normal(size=(300, 2))
    real[:, 0] += rng.choice([1, 2], 300, p=[0.45, 0.55])
    for interval in (0.2, 0.8):
        p = simgap.recommend(real, syn, {"lights": k}, interval=interval).parameters["lights"]
        assert p.low == int(p.low) and p.high == int(p.high) and p.low <= p.value <= p.high


def test_parameter_columns_may_be_tensors_that_track_gradients():
    torch = pytest.importorskip("torch")
    real, syn, u = _shifted()
    want = simgap.recommend(real, syn, {"shift": u}).parameters["shift"].value
    got = simgap.recommend(real, syn, {"shift": torch.from_numpy(u).requires_grad_()}).parameters["shift"].value
    assert got == want


@pytest.mark.parametrize("seed", [-1, "a", 1.5, True])
def test_recommend_checks_its_seed(seed):
    real, syn, u = _shifted()
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simgap.recommend(real, syn, {"shift": u}, seed=seed)
