"""sliced_wasserstein against the float64 reference (and POT when it is installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simgap
import _reference as ref
from conftest import DEVICES, DTYPES, gap_pair, rtol, to_device

SW_SHAPES = [(1, 1, 1), (2, 7, 3), (97, 130, 64), (1000, 1025, 3), (300, 257, 513), (4097, 1000, 1)]
SHAPE_IDS = [f"{n}x{m}x{d}" for n, m, d in SW_SHAPES]


def _assert_sw_close(got, expected, dtype):
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=rtol(dtype), abs=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("shape", SW_SHAPES, ids=SHAPE_IDS)
def test_sliced_wasserstein_matches_reference(shape, p, dtype, device, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    got = simgap.sliced_wasserstein(to_device(x, device), to_device(y, device), n_projections=50, p=p,
                                    seed=3)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, n_projections=50, p=p, seed=3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliced_wasserstein_defaults(dtype, rng):
    """Defaults: 256 projections, p=2, seed=0."""
    x, y = gap_pair(rng, 150, 110, 5, dtype)
    got = simgap.sliced_wasserstein(x, y)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, n_projections=256, p=2, seed=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_sliced_wasserstein_real_p(p, dtype, rng):
    x, y = gap_pair(rng, 64, 80, 4, dtype)
    got = simgap.sliced_wasserstein(x, y, n_projections=20, p=p, seed=11)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, n_projections=20, p=p, seed=11), dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("which", ["both", "x_only", "y_only"])
@pytest.mark.parametrize("n,m,d", [(1, 4, 2), (5, 9, 3), (301, 128, 16)])
def test_sliced_wasserstein_weighted(n, m, d, which, p, dtype, device, rng):
    x, y = gap_pair(rng, n, m, d, dtype)
    a = rng.random(n) * 2 if which in ("both", "x_only") else None
    b = rng.random(m) * 5 if which in ("both", "y_only") else None
    if b is not None and m > 4:
        b[:2] = 0.0  # zero weights are allowed
    got = simgap.sliced_wasserstein(to_device(x, device), to_device(y, device), n_projections=40,
                                    p=p, seed=5, x_weights=None if a is None else to_device(a, device),
                                    y_weights=None if b is None else to_device(b, device))
    expected = ref.sliced_wasserstein(x, y, n_projections=40, p=p, seed=5, x_weights=a, y_weights=b)
    unweighted = ref.sliced_wasserstein(x, y, n_projections=40, p=p, seed=5)
    if n > 1 or which != "x_only":
        assert abs(expected - unweighted) > 10 * rtol(dtype) * expected  # the weights matter here
    _assert_sw_close(got, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2])
def test_sliced_wasserstein_explicit_projections(p, dtype, rng):
    x, y = gap_pair(rng, 90, 70, 6, dtype)
    # Not unit columns: projections are used exactly as given.
    theta = rng.standard_normal((6, 13)) * rng.uniform(0.2, 3.0, size=13)
    got = simgap.sliced_wasserstein(x, y, projections=theta, p=p)
    expected = ref.sliced_wasserstein(x, y, projections=theta, p=p)
    normalised = ref.sliced_wasserstein(x, y, projections=theta / np.linalg.norm(theta, axis=0), p=p)
    assert abs(expected - normalised) > 10 * rtol(dtype) * expected
    _assert_sw_close(got, expected, dtype)
    # float32 projections and a torch tensor work too; n_projections is ignored.
    got32 = simgap.sliced_wasserstein(x, y, projections=torch.from_numpy(theta.astype(np.float32)),
                                      n_projections=3, p=p)
    _assert_sw_close(got32, ref.sliced_wasserstein(x, y, projections=theta.astype(np.float32), p=p),
                     np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliced_wasserstein_strided_projections(dtype, rng):
    x, y = gap_pair(rng, 50, 40, 5, dtype)
    base = rng.standard_normal((10, 30))
    theta = base[::-2, ::3]  # (5, 10), negative and non-unit strides
    got = simgap.sliced_wasserstein(x, y, projections=theta)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, projections=theta), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3])
def test_sliced_wasserstein_per_projection(p, dtype, rng):
    x, y = gap_pair(rng, 77, 55, 4, dtype)
    out = simgap.sliced_wasserstein(x, y, n_projections=17, p=p, seed=2, return_per_projection=True)
    assert isinstance(out, tuple) and len(out) == 2
    value, per = out
    expected_value, expected_per = ref.sliced_wasserstein(x, y, n_projections=17, p=p, seed=2,
                                                          return_per_projection=True)
    assert isinstance(per, np.ndarray) and per.shape == (17,)
    _assert_sw_close(value, expected_value, dtype)
    np.testing.assert_allclose(per, expected_per, rtol=rtol(dtype), atol=rtol(dtype) * per.max())
    assert value == pytest.approx(np.mean(per) ** (1.0 / p), rel=1e-12)
    assert simgap.sliced_wasserstein(x, y, n_projections=17, p=p, seed=2) == value


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliced_wasserstein_seed_reproducible(dtype, rng):
    x, y = gap_pair(rng, 200, 180, 8, dtype)
    a = simgap.sliced_wasserstein(x, y, n_projections=10, seed=42)
    b = simgap.sliced_wasserstein(x, y, n_projections=10, seed=42)
    c = simgap.sliced_wasserstein(x, y, n_projections=10, seed=43)
    assert a == b
    assert a != c
    _assert_sw_close(c, ref.sliced_wasserstein(x, y, n_projections=10, seed=43), dtype)
    # Seed 42's per-projection values are the reference's directions for seed 42.
    _, per10 = simgap.sliced_wasserstein(x, y, n_projections=10, seed=42, return_per_projection=True)
    _, per_ref = ref.sliced_wasserstein(x, y, n_projections=10, seed=42, return_per_projection=True)
    np.testing.assert_allclose(per10, per_ref, rtol=rtol(dtype), atol=rtol(dtype) * per_ref.max())


def test_sliced_wasserstein_torch_cpu(rng):
    x, y = gap_pair(rng, 60, 45, 3, np.float32)
    got = simgap.sliced_wasserstein(torch.from_numpy(x), torch.from_numpy(y).t().contiguous().t(),
                                    n_projections=30, seed=1)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, n_projections=30, seed=1), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliced_wasserstein_non_contiguous(dtype, rng):
    bx = (rng.standard_normal((80, 10)) + 0.5).astype(dtype)
    by = rng.standard_normal((70, 10)).astype(dtype)
    x, y = bx[::-2, ::2], np.asfortranarray(by[:, 1::2])
    got = simgap.sliced_wasserstein(x, y, n_projections=25, p=1, seed=4)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, n_projections=25, p=1, seed=4), dtype)


@pytest.mark.parametrize("kind", [np.int64, np.bool_])
def test_sliced_wasserstein_int_bool(kind, rng):
    x = rng.integers(0, 3, size=(40, 4)).astype(kind)
    y = rng.integers(1, 4, size=(30, 4)).astype(kind)
    got = simgap.sliced_wasserstein(x, y, n_projections=12)
    assert got == simgap.sliced_wasserstein(x.astype(np.float64), y.astype(np.float64), n_projections=12)
    _assert_sw_close(got, ref.sliced_wasserstein(x, y, n_projections=12), np.float64)


# ----------------------------------------------------------------------------------------- POT
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_pot(weighted, p, dtype, rng):
    ot = pytest.importorskip("ot")
    x, y = gap_pair(rng, 120, 95, 7, dtype)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    a = rng.random(120) if weighted else None
    b = rng.random(95) if weighted else None
    got = simgap.sliced_wasserstein(x, y, n_projections=64, p=p, seed=9, x_weights=a, y_weights=b)
    expected = ot.sliced_wasserstein_distance(
        x64, y64, None if a is None else a / a.sum(), None if b is None else b / b.sum(),
        n_projections=64, p=p, seed=9)
    _assert_sw_close(got, float(expected), dtype)


# ---- large p: |Delta|^p beyond float64's range (issue 18, item 2) -----------------------------------

def _log_sliced(x, y, p, *, n_projections=256, seed=0, x_weights=None, y_weights=None):
    """SW_p in the log domain (the largest |Delta| of each direction factored out): never overflows."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    theta = ref.random_projections(x.shape[1], n_projections, seed)
    a = np.full(len(x), 1.0 / len(x)) if x_weights is None else np.asarray(x_weights) / np.sum(x_weights)
    b = np.full(len(y), 1.0 / len(y)) if y_weights is None else np.asarray(y_weights) / np.sum(y_weights)
    logs = []
    for l in range(n_projections):
        u, v = x @ theta[:, l], y @ theta[:, l]
        iu, iv = np.argsort(u, kind="stable"), np.argsort(v, kind="stable")
        cu, cv = np.cumsum(a[iu]), np.cumsum(b[iv])
        cu[-1] = cv[-1] = 1.0
        grid = np.unique(np.concatenate([[0.0], cu, cv]))
        t = 0.5 * (grid[:-1] + grid[1:])
        diff = np.abs(u[iu][np.minimum(np.searchsorted(cu, t), len(u) - 1)]
                      - v[iv][np.minimum(np.searchsorted(cv, t), len(v) - 1)])
        big = diff.max()
        logs.append(p * np.log(big) + np.log(np.sum(np.diff(grid) * (diff / big) ** p)) if big > 0 else -np.inf)
    logs = np.array(logs)
    top = logs.max()
    if top == -np.inf:
        return 0.0
    return float(np.exp((top + np.log(np.mean(np.exp(logs - top)))) / p))


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e3])
@pytest.mark.parametrize("p", [300, 1000, 1e4, 1e6])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sliced_wasserstein_large_p_is_finite_and_exact(p, scale, dtype, rng):
    x = (rng.normal(size=(300, 4)) * scale).astype(dtype)
    y = (rng.normal(0.3, 1.2, size=(200, 4)) * scale).astype(dtype)
    got, per = simgap.sliced_wasserstein(x, y, p=p, n_projections=64, return_per_projection=True)
    expected = _log_sliced(x, y, p, n_projections=64)
    assert np.isfinite(got) and got > 0
    # float32 inputs are projected in float32: their rounding, not |Delta|^p's, sets the tolerance.
    np.testing.assert_allclose(got, expected, rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert per.shape == (64,) and np.all(per >= 0)  # W_p^p at the data's scale (inf past float64's range)


def test_sliced_wasserstein_large_p_weighted_and_torch(rng):
    x, y = rng.normal(size=(150, 3)), rng.normal(0.5, 1.0, size=(120, 3))
    wx, wy = rng.uniform(0.1, 1.0, 150), rng.uniform(0.1, 1.0, 120)
    expected = _log_sliced(x, y, 1000, n_projections=32, x_weights=wx, y_weights=wy)
    got = simgap.sliced_wasserstein(x, y, p=1000, n_projections=32, x_weights=wx, y_weights=wy)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    got_t = simgap.sliced_wasserstein(torch.from_numpy(x), torch.from_numpy(y), p=1000, n_projections=32,
                                      x_weights=torch.from_numpy(wx), y_weights=torch.from_numpy(wy))
    assert got_t == got


def test_sliced_wasserstein_large_p_of_equal_samples_is_zero(rng):
    x = rng.normal(size=(100, 3))
    assert simgap.sliced_wasserstein(x, x.copy(), p=1000) == 0.0
    assert simgap.sliced_wasserstein(x, x.copy(), p=2) == 0.0


@pytest.mark.parametrize("p", [0.5, 1e6 * 1.5, np.inf])
def test_sliced_wasserstein_p_out_of_range_is_named(p, rng):
    x = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="p must be"):
        simgap.sliced_wasserstein(x, x + 1, p=p)
