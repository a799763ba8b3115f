"""kernel_matrix and kernel_contract against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simgap
import _reference as ref
from conftest import DEVICES, DTYPES, from_device, kernel_tol, to_device

KERNELS = ref.KERNELS

# (n, m, d): every size in {1, 2, 7, 1000, 4097} appears as n and as m, every d in {1, 3, 64, 513},
# without the full product (4097 x 4097 x 513 alone would take the whole time budget).
SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (2, 1, 64),
    (7, 2, 513),
    (2, 4097, 3),
    (1000, 7, 64),
    (4097, 1000, 1),
    (1000, 1000, 3),
    (7, 4097, 513),
    (4097, 2, 513),
]
SHAPE_IDS = [f"{n}x{m}x{d}" for n, m, d in SHAPES]


def _data(rng, n, m, d, dtype, offset=1.5):
    # An offset away from the origin: distances must not depend on where the cloud sits.
    x = rng.standard_normal((n, d)) + offset
    y = 1.3 * rng.standard_normal((m, d)) + offset
    return x.astype(dtype), y.astype(dtype)


def _bandwidth(kernel, x, y):
    """A fixed numeric bandwidth at the data's scale (None for kernels that take none)."""
    if kernel not in ref.BANDWIDTH_KERNELS:
        return None
    return 0.8 * ref.median_bandwidth(x, y)


def _kw(kernel, bandwidth):
    return {"kernel": kernel} if bandwidth is None else {"kernel": kernel, "bandwidth": bandwidth}


def assert_contract_close(got, x, y, w, dtype, **kw):
    """|got - K w| <= r |K| |w| + atol sum|w|: the kernel_matrix tolerance carried through K @ w."""
    k = ref.kernel_matrix(x, y, **kw)
    w64 = np.asarray(w, dtype=np.float64)
    expected = k @ w64
    tol = kernel_tol(dtype, k)
    bound = tol["rtol"] * (np.abs(k) @ np.abs(w64)) + tol["atol"] * np.sum(np.abs(w64), axis=0)
    assert got.shape == expected.shape
    err = np.abs(got - expected)
    assert np.all(err <= bound), f"max excess {np.max(err - bound):.3g}, max err {np.max(err):.3g}"


# ------------------------------------------------------------------------------- kernel_matrix
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_kernel_matrix_matches_reference(shape, kernel, dtype, device, rng):
    n, m, d = shape
    x, y = _data(rng, n, m, d, dtype)
    bw = _bandwidth(kernel, x, y)
    got = simgap.kernel_matrix(to_device(x, device), to_device(y, device), **_kw(kernel, bw))
    got = from_device(got, device)
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=bw)
    assert isinstance(got, np.ndarray)
    assert got.shape == (n, m)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n,d", [(1, 3), (2, 1), (97, 64), (1025, 3), (300, 513)])
def test_kernel_matrix_y_none_is_k_x_x(n, d, kernel, dtype, device, rng):
    x = (rng.standard_normal((n, d)) + 2.0).astype(dtype)
    got = simgap.kernel_matrix(to_device(x, device), kernel=kernel)
    got = from_device(got, device)
    expected = ref.kernel_matrix(x, kernel=kernel)  # median of x alone
    assert got.shape == (n, n) and got.dtype == dtype
    tol = kernel_tol(dtype, expected)
    np.testing.assert_allclose(got, expected, **tol)
    # The diagonal is k(x_i, x_i): 1 for gaussian/laplacian/imq, 0 for energy.
    np.testing.assert_allclose(np.diag(got), np.diag(expected), **tol)
    np.testing.assert_allclose(got, got.T, **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
def test_kernel_matrix_default_bandwidth_is_median(kernel, dtype, device, rng):
    x, y = _data(rng, 300, 211, 5, dtype)
    got = simgap.kernel_matrix(to_device(x, device), to_device(y, device), kernel=kernel)
    got = from_device(got, device)
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=ref.median_bandwidth(x, y))
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))
    # ...and not some other scale (e.g. the median of x alone).
    other = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=1.5 * ref.median_bandwidth(x, y))
    assert not np.allclose(got, other, **kernel_tol(dtype, expected))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("container", [list, tuple, np.array])
def test_multiscale_gaussian(container, dtype, device, rng):
    x, y = _data(rng, 257, 130, 7, dtype)
    med = ref.median_bandwidth(x, y)
    sigmas = [0.25 * med, med, 4.0 * med]
    got = simgap.kernel_matrix(to_device(x, device), to_device(y, device), kernel="gaussian",
                               bandwidth=container(sigmas))
    got = from_device(got, device)
    expected = ref.kernel_matrix(x, y, kernel="gaussian", bandwidth=sigmas)
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))
    assert np.max(expected) > 1.5  # a sum over three scales, not one of them


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma,coef0,degree", [(None, 1.0, 3), (0.3, 0.0, 2), (0.05, -0.5, 1),
                                                (1.0 / 8, 2.0, 5)])
def test_polynomial_parameters(gamma, coef0, degree, dtype, rng):
    x, y = _data(rng, 61, 45, 8, dtype, offset=0.0)
    got = simgap.kernel_matrix(x, y, kernel="polynomial", gamma=gamma, coef0=coef0, degree=degree)
    expected = ref.kernel_matrix(x, y, kernel="polynomial", gamma=gamma, coef0=coef0, degree=degree)
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq", "energy"])
def test_far_from_origin(kernel, dtype, rng):
    """A cloud of unit spread sitting at 100: float32 distances need the shared-mean centring."""
    x, y = _data(rng, 200, 150, 3, np.float64, offset=100.0)
    x, y = x.astype(dtype), y.astype(dtype)
    bw = _bandwidth(kernel, x, y)
    got = simgap.kernel_matrix(x, y, **_kw(kernel, bw))
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=bw)
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("d", [1, 3, 64])
def test_near_duplicate_rows(d, kernel, dtype, device, rng):
    """y holds copies of x's rows moved by ~1e-3: small distances must keep the dtype's accuracy.

    This is where ||x||^2 + ||y||^2 - 2<x, y> loses digits; sqrt kernels (laplacian, energy) feel it
    most, since sqrt turns an absolute error e in d^2 into sqrt(e) in the distance.
    """
    x = (rng.standard_normal((200, d)) + 1.5).astype(dtype)
    y = (x[:150].astype(np.float64) + 1e-3 * rng.standard_normal((150, d))).astype(dtype)
    bw = _bandwidth(kernel, x, y)
    got = simgap.kernel_matrix(to_device(x, device), to_device(y, device), **_kw(kernel, bw))
    got = from_device(got, device)
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=bw)
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))


# ----------------------------------------------------------------------------- kernel_contract
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", [None, 1, 5], ids=["w1d", "q1", "q5"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_kernel_contract_matches_reference(shape, kernel, q, dtype, device, rng):
    n, m, d = shape
    x, y = _data(rng, n, m, d, dtype)
    # Any finite real weights, negative ones included.
    w = rng.standard_normal(m if q is None else (m, q))
    bw = _bandwidth(kernel, x, y)
    got = simgap.kernel_contract(to_device(x, device), to_device(y, device), to_device(w, device),
                                 **_kw(kernel, bw))
    got = from_device(got, device)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float64
    assert got.shape == ((n,) if q is None else (n, q))
    assert_contract_close(got, x, y, w, dtype, kernel=kernel, bandwidth=bw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_contract_weights_float32(dtype, rng):
    x, y = _data(rng, 90, 33, 4, dtype)
    w = rng.standard_normal((33, 3)).astype(np.float32)
    got = simgap.kernel_contract(x, y, w, bandwidth=1.7)
    assert_contract_close(got, x, y, w, dtype, kernel="gaussian", bandwidth=1.7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "energy"])
def test_kernel_contract_default_median_and_multiscale(kernel, dtype, rng):
    x, y = _data(rng, 120, 77, 6, dtype)
    w = rng.random((77, 2))
    got = simgap.kernel_contract(x, y, w, kernel=kernel)
    assert_contract_close(got, x, y, w, dtype, kernel=kernel)
    if kernel == "gaussian":
        sig = [0.5, 2.0, 8.0]
        got = simgap.kernel_contract(x, y, w, kernel=kernel, bandwidth=sig)
        assert_contract_close(got, x, y, w, dtype, kernel=kernel, bandwidth=sig)


# ------------------------------------------------------------------------ input kinds / layouts
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_torch_cpu_tensors(kernel, dtype, rng):
    x, y = _data(rng, 150, 61, 9, dtype)
    w = rng.standard_normal((61, 5))
    bw = _bandwidth(kernel, x, y)
    tx, ty, tw = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)

    got = simgap.kernel_matrix(tx, ty, **_kw(kernel, bw))
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=bw)
    assert isinstance(got, np.ndarray) and got.dtype == dtype
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))

    got = simgap.kernel_contract(tx, ty, tw, **_kw(kernel, bw))
    assert isinstance(got, np.ndarray)
    assert_contract_close(got, x, y, w, dtype, kernel=kernel, bandwidth=bw)

    # Non-contiguous tensor views too.
    tx_t = torch.from_numpy(np.ascontiguousarray(x.T)).t()
    assert not tx_t.is_contiguous()
    ty_f = torch.from_numpy(np.asfortranarray(y))  # column-major
    got = simgap.kernel_matrix(tx_t, ty_f, **_kw(kernel, bw))
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))


def _layouts(rng, dtype):
    """Named (x_view, y_view) pairs with unusual strides, plus their contiguous copies."""
    bx = (rng.standard_normal((80, 14)) + 1.0).astype(dtype)
    by = (rng.standard_normal((66, 14)) + 1.0).astype(dtype)
    return {
        "transposed": (np.ascontiguousarray(bx[:, :7].T).T, np.asfortranarray(by[:, :7])),
        "every_other_column": (bx[:, ::2], by[:, ::2]),
        "every_other_row": (bx[::2, :7], by[::3, 7:]),
        "negative_row_stride": (bx[::-1, :7], by[::-1, 3:10]),
        "negative_column_stride": (bx[:, ::-2], by[:, 13::-2]),
        "both_negative": (bx[::-3, ::-2], by[::-2, ::-2]),
    }


LAYOUTS = ["transposed", "every_other_column", "every_other_row", "negative_row_stride",
           "negative_column_stride", "both_negative"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_inputs(layout, kernel, dtype, rng):
    x, y = _layouts(rng, dtype)[layout]
    assert not (x.flags.c_contiguous and y.flags.c_contiguous)
    bw = _bandwidth(kernel, x, y)
    got = simgap.kernel_matrix(x, y, **_kw(kernel, bw))
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=bw)
    np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))

    # Strided weights as well.
    w_base = rng.standard_normal((2 * len(y), 6))
    w = w_base[::-2, ::2]
    got = simgap.kernel_contract(x, y, w, **_kw(kernel, bw))
    assert_contract_close(got, x, y, w, dtype, kernel=kernel, bandwidth=bw)

    # The default median bandwidth must read the same strided data.
    if kernel in ref.BANDWIDTH_KERNELS:
        got = simgap.kernel_matrix(x, y, kernel=kernel)
        expected = ref.kernel_matrix(x, y, kernel=kernel)
        np.testing.assert_allclose(got, expected, **kernel_tol(dtype, expected))


@pytest.mark.parametrize("kind", [np.int32, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("kernel", KERNELS)
def test_int_and_bool_inputs_are_float64(kind, kernel, rng):
    x = rng.integers(0, 5, size=(40, 6)).astype(kind)
    y = rng.integers(0, 5, size=(31, 6)).astype(kind)
    bw = 1.3 if kernel in ref.BANDWIDTH_KERNELS else None
    got = simgap.kernel_matrix(x, y, **_kw(kernel, bw))
    as_float = simgap.kernel_matrix(x.astype(np.float64), y.astype(np.float64), **_kw(kernel, bw))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, as_float, rtol=1e-12, atol=1e-12 * np.max(np.abs(as_float)))
    expected = ref.kernel_matrix(x, y, kernel=kernel, bandwidth=bw)
    np.testing.assert_allclose(got, expected, **kernel_tol(np.float64, expected))


@pytest.mark.parametrize("kernel", KERNELS)
def test_mixed_float32_float64_computes_in_float64(kernel, rng):
    x64, y64 = _data(rng, 70, 50, 5, np.float64)
    x32 = x64.astype(np.float32)
    bw = _bandwidth(kernel, x32, y64)
    got = simgap.kernel_matrix(x32, y64, **_kw(kernel, bw))
    assert got.dtype == np.float64
    expected = ref.kernel_matrix(x32, y64, kernel=kernel, bandwidth=bw)
    np.testing.assert_allclose(got, expected, **kernel_tol(np.float64, expected))


# ---- the median bandwidth depends on values, not on memory (issue 18, item 3) ------------------------

@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
def test_median_kernel_of_x_with_itself_does_not_depend_on_aliasing(kernel, dtype, kind):
    x = np.random.default_rng(0).normal(size=(120, 4)).astype(dtype)
    w = np.random.default_rng(1).normal(size=(120, 2))
    if kind == "torch":
        x = torch.from_numpy(x)
    copy = x.clone() if kind == "torch" else x.copy()
    same = np.asarray(simgap.kernel_matrix(x, x, kernel=kernel))
    np.testing.assert_array_equal(same, np.asarray(simgap.kernel_matrix(x, copy, kernel=kernel)))
    np.testing.assert_array_equal(np.asarray(simgap.kernel_contract(x, x, w, kernel=kernel)),
                                  np.asarray(simgap.kernel_contract(x, copy, w, kernel=kernel)))
    # mmd2's rule: x and y pooled (x twice here), whatever the memory.
    sigma = simgap.median_bandwidth(x, copy)
    np.testing.assert_array_equal(same, np.asarray(simgap.kernel_matrix(x, copy, kernel=kernel, bandwidth=sigma)))
    assert np.all(np.diag(same) == 1.0)


def test_median_kernel_without_y_is_x_alone():
    x = np.random.default_rng(0).normal(size=(120, 4))
    sigma = simgap.median_bandwidth(x)
    np.testing.assert_array_equal(simgap.kernel_matrix(x), simgap.kernel_matrix(x, bandwidth=sigma))
