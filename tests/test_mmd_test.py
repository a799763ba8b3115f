"""simgap.mmd_test (permutation two-sample test) against a plain float64 permutation reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import simgap
import simgap._estimators
import _reference as ref
from conftest import DTYPES, gap_pair, rtol


def permutation_reference(x, y, n_permutations, seed, estimator="unbiased", **kw):
    """(observed, null) MMD^2 of the observed split and of each seeded relabelling, in float64.

    z = vstack(x, y); the observed labelling comes first and draws nothing; relabelling p takes the
    rows rng.permutation(n + m)[:n] of z as "x" (rng = default_rng(seed), one draw per relabelling).
    """
    x, y = ref.as_f64(x), ref.as_f64(y)
    n, m = len(x), len(y)
    z = np.vstack([x, y])
    rng = np.random.default_rng(seed)
    observed = ref.mmd2(x, y, estimator=estimator, **kw)
    null = []
    for _ in range(n_permutations):
        is_x = np.zeros(n + m, dtype=bool)
        is_x[rng.permutation(n + m)[:n]] = True
        null.append(ref.mmd2(z[is_x], z[~is_x], estimator=estimator, **kw))
    return observed, np.array(null)


def _scale(x, y, **kw):
    z = np.vstack([ref.as_f64(x), ref.as_f64(y)])
    return float(np.max(np.abs(ref.kernel_matrix(z, z, **kw))))


def _kw(kernel, x, y):
    if kernel in ref.BANDWIDTH_KERNELS:
        return {"kernel": kernel, "bandwidth": 0.9 * ref.median_bandwidth(x, y)}
    return {"kernel": kernel}


# (n, m, d): tiny, n != m, odd sizes across the contraction's tile (192) and register blocks.
SHAPES = [(3, 2, 1), (7, 12, 3), (61, 50, 5), (150, 97, 13)]
SHAPE_IDS = [f"{n}x{m}x{d}" for n, m, d in SHAPES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq", "polynomial", "energy"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_statistic_and_null_match_reference(shape, kernel, estimator, dtype, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    kw = _kw(kernel, x, y)
    P = 24
    res = simgap.mmd_test(x, y, P, estimator=estimator, seed=17, **kw)
    observed, null = permutation_reference(x, y, P, 17, estimator=estimator, **kw)
    r = rtol(dtype)
    scale = _scale(x, y, **kw)
    assert isinstance(res, simgap.MMDTestResult)
    assert res.estimator == estimator and res.kernel == kernel and res.n_permutations == P
    assert isinstance(res.statistic, float)
    assert abs(res.statistic - observed) <= r * (abs(observed) + scale)
    assert res.null_distribution.shape == (P,) and res.null_distribution.dtype == np.float64
    np.testing.assert_allclose(res.null_distribution, null, rtol=r, atol=r * scale)
    # The relabellings are not all the same (each one drew its own permutation).
    assert len(np.unique(res.null_distribution)) >= min(P // 2, math.comb(n + m, n) - 1)
    expected_p = (1.0 + np.count_nonzero(res.null_distribution >= res.statistic)) / (1.0 + P)
    assert res.p_value == expected_p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_statistic_equals_mmd2(estimator, dtype, rng):
    x, y = gap_pair(rng, 83, 71, 6, dtype)
    res = simgap.mmd_test(x, y, 10, estimator=estimator)  # bandwidth "median": one value, pooled
    assert res.bandwidth == pytest.approx((simgap.median_bandwidth(x, y),), rel=1e-12)
    assert len(res.bandwidth) == 1
    direct = simgap.mmd2(x, y, bandwidth=res.bandwidth[0], estimator=estimator)
    default = simgap.mmd2(x, y, estimator=estimator)
    rel = 1e-7 if dtype == np.float64 else rtol(dtype)
    assert res.statistic == pytest.approx(direct, rel=rel)
    assert res.statistic == pytest.approx(default, rel=rel)


def test_multiscale_bandwidth_is_reported_and_used(rng):
    x, y = gap_pair(rng, 40, 33, 3, np.float64)
    sig = [0.5, 1.0, 4.0]
    res = simgap.mmd_test(x, y, 8, bandwidth=sig, seed=2)
    assert res.bandwidth == tuple(sig)
    observed, null = permutation_reference(x, y, 8, 2, bandwidth=sig)
    assert res.statistic == pytest.approx(observed, rel=1e-7)
    np.testing.assert_allclose(res.null_distribution, null, rtol=1e-7, atol=1e-9)


def test_seed_reproducible_and_seed_dependent(rng):
    x, y = gap_pair(rng, 30, 30, 2, np.float64, shift=0.3)
    a = simgap.mmd_test(x, y, 50, seed=1)
    b = simgap.mmd_test(x, y, 50, seed=1)
    c = simgap.mmd_test(x, y, 50, seed=2)
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    assert a.p_value == b.p_value and a.statistic == b.statistic
    assert a.statistic == c.statistic
    assert not np.array_equal(a.null_distribution, c.null_distribution)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clear_shift_is_detected(dtype, rng):
    x, y = gap_pair(rng, 100, 90, 4, dtype, shift=1.0)
    res = simgap.mmd_test(x, y, 300)
    assert res.p_value < 0.01
    assert res.p_value == pytest.approx(1.0 / 301)  # nothing in the null reaches the statistic
    assert res.statistic > res.null_distribution.max()


def test_p_values_roughly_uniform_under_null():
    p = []
    for s in range(40):
        g = np.random.default_rng(900 + s)
        x, y = g.standard_normal((40, 3)), g.standard_normal((35, 3))
        p.append(simgap.mmd_test(x, y, 99, seed=s, bandwidth=1.5).p_value)
    p = np.array(p)
    assert np.mean(p < 0.05) < 0.2, p
    assert 0.3 < np.mean(p) < 0.7, p
    assert np.all((p > 0) & (p <= 1))


def test_unbiased_null_is_centred_on_zero(rng):
    """Under relabelling the U-statistic has mean ~0 (the V-statistic's mean is positive)."""
    x, y = gap_pair(rng, 50, 45, 3, np.float64, shift=0.0)
    u = simgap.mmd_test(x, y, 400, bandwidth=1.0, seed=4)
    v = simgap.mmd_test(x, y, 400, bandwidth=1.0, seed=4, estimator="biased")
    se = u.null_distribution.std(ddof=1) / np.sqrt(400)
    assert abs(u.null_distribution.mean()) < 4 * se
    assert v.null_distribution.mean() > 10 * se
    assert np.all(v.null_distribution > 0)  # V-statistic of a positive definite kernel


def test_float32_matches_float64(rng):
    x, y = gap_pair(rng, 64, 57, 5, np.float64)
    r64 = simgap.mmd_test(x, y, 40, bandwidth=1.7, seed=3)
    r32 = simgap.mmd_test(x.astype(np.float32), y.astype(np.float32), 40, bandwidth=1.7, seed=3)
    r = rtol(np.float32)
    assert r32.statistic == pytest.approx(r64.statistic, rel=r, abs=r)
    np.testing.assert_allclose(r32.null_distribution, r64.null_distribution, rtol=r, atol=r)
    mixed = simgap.mmd_test(x.astype(np.float32), y, 40, bandwidth=1.7, seed=3)  # mixed -> float64
    observed, _ = permutation_reference(x.astype(np.float32), y, 0, 3, bandwidth=1.7)
    assert mixed.statistic == pytest.approx(observed, rel=rtol(np.float64), abs=rtol(np.float64))


def test_to_dict_is_json_serialisable(rng):
    x, y = gap_pair(rng, 20, 25, 3, np.float32)
    res = simgap.mmd_test(x, y, 15, kernel="laplacian", bandwidth=2.0, seed=9)
    d = res.to_dict()
    back = json.loads(json.dumps(d))
    assert set(back) == {"statistic", "p_value", "n_permutations", "null_distribution", "estimator",
                         "kernel", "bandwidth"}
    assert back["statistic"] == res.statistic and back["p_value"] == res.p_value
    assert back["null_distribution"] == res.null_distribution.tolist()
    assert back["n_permutations"] == 15 and back["kernel"] == "laplacian"
    assert back["bandwidth"] == [2.0] and back["estimator"] == "unbiased"


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-1, ValueError), (2.5, TypeError),
                                       (True, TypeError), ("100", TypeError)])
def test_bad_n_permutations(bad, error, rng):
    x, y = gap_pair(rng, 10, 10, 2, np.float64)
    with pytest.raises(error, match="n_permutations"):
        simgap.mmd_test(x, y, bad)


@pytest.mark.parametrize("estimator", ["block", "linear", "rff", "nope"])
def test_only_exact_estimators(estimator, rng):
    x, y = gap_pair(rng, 10, 10, 2, np.float64)
    with pytest.raises(ValueError, match="estimator"):
        simgap.mmd_test(x, y, 10, estimator=estimator)


def test_exact_alias(rng):
    x, y = gap_pair(rng, 12, 9, 2, np.float64)
    a = simgap.mmd_test(x, y, 10, estimator="exact")
    b = simgap.mmd_test(x, y, 10, estimator="unbiased")
    assert a.estimator == "unbiased"
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)


def test_unbiased_needs_two_rows(rng):
    x, y = gap_pair(rng, 1, 10, 2, np.float64)
    with pytest.raises(ValueError):
        simgap.mmd_test(x, y, 10)
    res = simgap.mmd_test(x, y, 10, estimator="biased")
    observed, null = permutation_reference(x, y, 10, 0, estimator="biased", bandwidth=res.bandwidth[0])
    assert res.statistic == pytest.approx(observed, rel=1e-7)
    np.testing.assert_allclose(res.null_distribution, null, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("columns_per_batch", [1, 2, 3, 5, 64])
def test_batched_equals_unbatched(columns_per_batch, dtype, rng, monkeypatch):
    """A small memory budget splits the relabellings into batches: the same draws, the same result."""
    x, y = gap_pair(rng, 45, 38, 4, dtype, shift=0.4)
    P = 70
    whole = simgap.mmd_test(x, y, P, seed=6, bandwidth=1.2)
    per_col = (45 + 38) * (8 + np.dtype(dtype).itemsize)
    monkeypatch.setattr(simgap._estimators, "TEST_MEMORY_BYTES", columns_per_batch * per_col)
    batched = simgap.mmd_test(x, y, P, seed=6, bandwidth=1.2)
    # Batches of fewer than 4 columns take the contraction's dot-product path instead of the GEMM
    # path: equal up to summation order (float64), or float32 rounding inside a tile (float32).
    tol = 1e-12 if dtype == np.float64 else 0.1 * rtol(dtype)
    assert batched.statistic == pytest.approx(whole.statistic, rel=tol, abs=tol * 1e-2)
    np.testing.assert_allclose(batched.null_distribution, whole.null_distribution, rtol=tol,
                               atol=tol * 1e-2)
    assert batched.p_value == whole.p_value
    observed, null = permutation_reference(x, y, P, 6, bandwidth=1.2)
    np.testing.assert_allclose(batched.null_distribution, null, rtol=rtol(dtype), atol=rtol(dtype))


def test_batched_tiny_budget(rng, monkeypatch):
    """A budget below one column still makes progress (one relabelling per batch)."""
    x, y = gap_pair(rng, 20, 21, 3, np.float64)
    whole = simgap.mmd_test(x, y, 9, seed=0, bandwidth=1.0)
    monkeypatch.setattr(simgap._estimators, "TEST_MEMORY_BYTES", 1)
    tiny = simgap.mmd_test(x, y, 9, seed=0, bandwidth=1.0)
    np.testing.assert_allclose(tiny.null_distribution, whole.null_distribution, rtol=1e-12, atol=1e-14)
    assert tiny.p_value == whole.p_value


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

@pytest.mark.parametrize("kernel", ["energy", "gaussian"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_tied_relabellings_count_as_at_least_the_observed(kernel, estimator):
    """Discrete data: many relabellings have exactly the observed statistic, but
    their float64 sums differ by a few ulps; they were counted as smaller
    (p = 0.801 instead of 0.889 here)."""
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    x = pts[np.repeat([0, 1, 2], 10)]
    y = pts[np.repeat([0, 1, 2], [12, 9, 9])]
    r = simgap.mmd_test(x, y, 2000, kernel=kernel, estimator=estimator, seed=1)
    ties = np.isclose(r.null_distribution, r.statistic, rtol=1e-9, atol=1e-15)
    assert ties.sum() > 50
    above = (r.null_distribution > r.statistic) & ~ties
    assert r.p_value == (1 + above.sum() + ties.sum()) / 2001

