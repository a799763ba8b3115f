"""kernel_contract with many weight columns (q >= 4: the register-blocked GEMM path on each tile).

Row counts straddle the 192-row tile (1, 193, 401) and q fills no register block exactly (4, 33, 100),
so every edge of the packing (partial row panels, partial column panels, partial tiles) is taken.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import simgap
import _reference as ref
from conftest import DTYPES, kernel_tol

KERNELS = ref.KERNELS

# (n, m, d): 1, 193 and 401 rows on both sides; d odd, 1 and wide.
SHAPES = [(1, 401, 5), (193, 1, 3), (193, 401, 17), (401, 193, 1), (401, 401, 64)]
SHAPE_IDS = [f"{n}x{m}x{d}" for n, m, d in SHAPES]


def _data(rng, n, m, d, dtype, offset=1.5):
    x = rng.standard_normal((n, d)) + offset
    y = 1.3 * rng.standard_normal((m, d)) + offset
    return x.astype(dtype), y.astype(dtype)


def _kw(kernel, x, y):
    if kernel in ref.BANDWIDTH_KERNELS:
        return {"kernel": kernel, "bandwidth": 0.8 * ref.median_bandwidth(x, y)}
    return {"kernel": kernel}


def assert_contract_close(got, k, w, dtype):
    """|got - K w| <= r |K| |w| + atol sum|w|: the kernel_matrix tolerance carried through K @ w."""
    w64 = np.asarray(w, dtype=np.float64)
    expected = k @ w64
    tol = kernel_tol(dtype, k)
    bound = tol["rtol"] * (np.abs(k) @ np.abs(w64)) + tol["atol"] * np.sum(np.abs(w64), axis=0)
    assert got.dtype == np.float64 and got.shape == expected.shape
    err = np.abs(got - expected)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (
        f"max excess {np.max(err - bound):.3g} at {worst}, max err {np.max(err):.3g}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", [4, 33, 100])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_many_columns_match_reference(shape, kernel, q, dtype, rng):
    n, m, d = shape
    x, y = _data(rng, n, m, d, dtype)
    w = rng.standard_normal((m, q))
    kw = _kw(kernel, x, y)
    got = simgap.kernel_contract(x, y, w, **kw)
    assert_contract_close(got, ref.kernel_matrix(x, y, **kw), w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", [4, 33])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n", [1, 193, 401])
def test_many_columns_y_none(n, kernel, q, dtype, rng):
    """y = x: the symmetric path (diagonal fixed to k(0)) feeding the GEMM."""
    x, _ = _data(rng, n, 1, 7, dtype)
    w = rng.standard_normal((n, q))
    kw = _kw(kernel, x, x)
    got = simgap.kernel_contract(x, None, w, **kw)
    assert_contract_close(got, ref.kernel_matrix(x, x, **kw), w, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_columns_are_independent(dtype, rng):
    """Column c of a q-column contraction equals the one-column contraction with weights[:, c]
    (the GEMM path against the dot-product path), and ones give the kernel row sums."""
    x, y = _data(rng, 211, 389, 6, dtype)
    w = rng.standard_normal((389, 37))
    w[:, 5] = 1.0
    w[:, 6] = 0.0
    wide = simgap.kernel_contract(x, y, w, bandwidth=2.0)
    k = ref.kernel_matrix(x, y, bandwidth=2.0)
    for c in (0, 5, 6, 31, 36):
        narrow = simgap.kernel_contract(x, y, w[:, c], bandwidth=2.0)
        assert_contract_close(narrow[:, None], k, w[:, c : c + 1], dtype)
        assert_contract_close(wide[:, c : c + 1], k, w[:, c : c + 1], dtype)
    assert np.all(wide[:, 6] == 0.0)
    np.testing.assert_allclose(wide[:, 5], k.sum(axis=1), rtol=kernel_tol(dtype, k)["rtol"])


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_weights(dtype, rng):
    x, y = _data(rng, 193, 250, 4, dtype)
    big = rng.standard_normal((500, 80))
    w = big[::2, ::3]  # (250, 27), strided both ways
    got = simgap.kernel_contract(x, y, w, kernel="laplacian", bandwidth=1.5)
    assert_contract_close(got, ref.kernel_matrix(x, y, kernel="laplacian", bandwidth=1.5), w, dtype)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 260), m=st.integers(1, 260), d=st.integers(1, 9), q=st.integers(4, 40),
       kernel=st.sampled_from(KERNELS), f32=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_many_columns_random_shapes(n, m, d, q, kernel, f32, seed):
    dtype = np.float32 if f32 else np.float64
    g = np.random.default_rng(seed)
    x, y = _data(g, n, m, d, dtype)
    w = g.standard_normal((m, q))
    kw = _kw(kernel, x, y)
    got = simgap.kernel_contract(x, y, w, **kw)
    assert_contract_close(got, ref.kernel_matrix(x, y, **kw), w, dtype)
