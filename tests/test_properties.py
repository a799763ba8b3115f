"""Hypothesis properties of mmd2 and sliced_wasserstein (symmetry, zeros, permutations, weights)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import simgap
import _reference as ref
from conftest import DTYPES, rtol

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KERNELS = ref.KERNELS
# Values on a 0.01 grid in [-10, 10]: exact ties and repeated rows happen, absurd scales (1e-30
# spreads whose squared bandwidth underflows in float32) do not.
ELEMENTS = st.integers(-1000, 1000).map(lambda i: i / 100.0)


@st.composite
def pair(draw, min_rows=2):
    d = draw(st.integers(1, 4))
    n = draw(st.integers(min_rows, 12))
    m = draw(st.integers(min_rows, 12))
    x = draw(hnp.arrays(np.float64, (n, d), elements=ELEMENTS))
    y = draw(hnp.arrays(np.float64, (m, d), elements=ELEMENTS))
    return x, y


def _scale(x, y, kernel):
    """Size of the kernel terms: the absolute tolerance for identities that should give 0."""
    kw = {"kernel": kernel}
    if kernel in ref.BANDWIDTH_KERNELS:
        kw["bandwidth"] = ref.median_bandwidth(x, y)
    return max(1.0, max(float(np.max(np.abs(ref.kernel_matrix(a, b, **kw))))
                        for a, b in [(x, x), (y, y), (x, y)]))


def _sw_close(got, expected, p, dtype, scale):
    """Compare SW_p values as W_p^p: the p-th root turns a 1e-24 rounding remainder into 1e-8."""
    return abs(got**p - expected**p) <= rtol(dtype) * expected**p + 1e-12 * scale**p


def _close(a, b, dtype, scale):
    r = rtol(dtype)
    return abs(a - b) <= r * 1e-2 * (abs(b) + scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(data=pair())
def test_mmd2_symmetric(data, kernel, dtype):
    x, y = (a.astype(dtype) for a in data)
    s = _scale(x, y, kernel)
    for estimator in ("unbiased", "biased"):
        xy = simgap.mmd2(x, y, kernel=kernel, estimator=estimator)
        yx = simgap.mmd2(y, x, kernel=kernel, estimator=estimator)
        assert _close(xy, yx, dtype, s), (estimator, xy, yx)
        if dtype == np.float64:  # (float32 against the reference is test_mmd.py's job)
            assert _close(xy, ref.mmd2(x, y, kernel=kernel, estimator=estimator), dtype, 10 * s)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(data=pair(min_rows=1))
def test_biased_mmd2_of_x_with_itself_is_zero(data, kernel, dtype):
    x = data[0].astype(dtype)
    s = _scale(x, x, kernel)
    got = simgap.mmd2(x, x, kernel=kernel, estimator="biased")
    assert abs(got) <= rtol(dtype) * s
    w = np.arange(1, len(x) + 1, dtype=np.float64)
    got_w = simgap.mmd2(x, x, kernel=kernel, x_weights=w, y_weights=w)
    assert abs(got_w) <= rtol(dtype) * s


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=pair(min_rows=1), p=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**31 - 1))
def test_sliced_wasserstein_of_x_with_itself_is_zero(data, p, seed, dtype):
    x = data[0].astype(dtype)
    scale = 1.0 + float(np.max(np.abs(x)))
    got = simgap.sliced_wasserstein(x, x, n_projections=16, p=p, seed=seed)
    assert _sw_close(got, 0.0, p, dtype, scale)
    # ...and also for a permuted copy (sorting, not row order, decides the coupling).
    got_perm = simgap.sliced_wasserstein(x, x[::-1], n_projections=16, p=p, seed=seed)
    assert _sw_close(got_perm, 0.0, p, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(data=pair(), perm_seed=st.integers(0, 2**32 - 1))
def test_mmd2_row_permutation_invariant(data, perm_seed, kernel, dtype):
    x, y = (v.astype(dtype) for v in data)
    r = np.random.default_rng(perm_seed)
    px, py = r.permutation(len(x)), r.permutation(len(y))
    a, b = r.random(len(x)) + 0.1, r.random(len(y)) + 0.1
    s = _scale(x, y, kernel)
    for estimator in ("unbiased", "biased"):
        base = simgap.mmd2(x, y, kernel=kernel, estimator=estimator)
        assert _close(simgap.mmd2(x[px], y, kernel=kernel, estimator=estimator), base, dtype, s)
        assert _close(simgap.mmd2(x, y[py], kernel=kernel, estimator=estimator), base, dtype, s)
        # Weighted: the weights travel with their rows.
        base_w = simgap.mmd2(x, y, kernel=kernel, estimator=estimator, x_weights=a, y_weights=b)
        got_w = simgap.mmd2(x[px], y[py], kernel=kernel, estimator=estimator, x_weights=a[px],
                            y_weights=b[py])
        assert _close(got_w, base_w, dtype, s)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=pair(min_rows=1), perm_seed=st.integers(0, 2**32 - 1), p=st.sampled_from([1, 2, 3]))
def test_sliced_wasserstein_row_permutation_invariant(data, perm_seed, p, dtype):
    x, y = (a.astype(dtype) for a in data)
    r = np.random.default_rng(perm_seed)
    px, py = r.permutation(len(x)), r.permutation(len(y))
    a, b = r.random(len(x)) + 0.1, r.random(len(y)) + 0.1
    scale = 1.0 + float(np.max(np.abs(np.r_[x.ravel(), y.ravel()])))
    base = simgap.sliced_wasserstein(x, y, n_projections=8, p=p)
    assert _sw_close(simgap.sliced_wasserstein(x[px], y[py], n_projections=8, p=p), base, p, dtype, scale)
    base_w = simgap.sliced_wasserstein(x, y, n_projections=8, p=p, x_weights=a, y_weights=b)
    got_w = simgap.sliced_wasserstein(x[px], y[py], n_projections=8, p=p, x_weights=a[px],
                                      y_weights=b[py])
    assert _sw_close(got_w, base_w, p, dtype, scale)
    expected_w = ref.sliced_wasserstein(x, y, n_projections=8, p=p, x_weights=a, y_weights=b)
    assert _sw_close(base_w, expected_w, p, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(data=pair(), c=st.floats(1e-3, 1e3), c2=st.floats(1e-3, 1e3))
def test_uniform_weights_reproduce_unweighted_mmd2(data, c, c2, kernel, dtype):
    x, y = (a.astype(dtype) for a in data)
    a, b = np.full(len(x), c), np.full(len(y), c2)
    s = _scale(x, y, kernel)
    biased = simgap.mmd2(x, y, kernel=kernel, estimator="biased")
    unbiased = simgap.mmd2(x, y, kernel=kernel)
    assert _close(simgap.mmd2(x, y, kernel=kernel, x_weights=a, y_weights=b), biased, dtype, s)
    assert _close(simgap.mmd2(x, y, kernel=kernel, x_weights=a), biased, dtype, s)
    assert _close(simgap.mmd2(x, y, kernel=kernel, x_weights=a, y_weights=b, estimator="unbiased"),
                  unbiased, dtype, s)
    assert _close(simgap.mmd2(x, y, kernel=kernel, y_weights=b, estimator="unbiased"),
                  unbiased, dtype, s)


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=pair(min_rows=1), c=st.floats(1e-3, 1e3), p=st.sampled_from([1, 2, 3]))
def test_uniform_weights_reproduce_unweighted_sliced(data, c, p, dtype):
    x, y = (a.astype(dtype) for a in data)
    base = simgap.sliced_wasserstein(x, y, n_projections=8, p=p, seed=1)
    got = simgap.sliced_wasserstein(x, y, n_projections=8, p=p, seed=1, x_weights=np.full(len(x), c),
                                    y_weights=np.full(len(y), 1.0))
    scale = 1.0 + float(np.max(np.abs(np.r_[x.ravel(), y.ravel()])))
    assert _sw_close(got, base, p, dtype, scale)
