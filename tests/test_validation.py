"""Bad input is refused at the public boundary with an error that names the argument."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import simgap
import _reference as ref

_rng = np.random.default_rng(2024)
X = _rng.standard_normal((6, 3))
Y = _rng.standard_normal((5, 3)) + 0.5


def names(arg: str) -> str:
    """Regex matching ``arg`` as a whole word ("x" does not match inside "x_weights")."""
    return rf"(?<![A-Za-z0-9_]){re.escape(arg)}(?![A-Za-z0-9_])"


# Each public function called on (x, y); the name the y argument has there.
CALLS = {
    "kernel_matrix": (lambda x, y, **kw: simgap.kernel_matrix(x, y, **kw), "y"),
    "kernel_contract": (lambda x, y, **kw: simgap.kernel_contract(x, y, np.ones(np.shape(y)[0]), **kw), "y"),
    "median_bandwidth": (lambda x, y, **kw: simgap.median_bandwidth(x, y, **kw), "y"),
    "mmd2": (lambda x, y, **kw: simgap.mmd2(x, y, **kw), "y"),
    "mmd2_batch": (lambda x, y, **kw: simgap.mmd2_batch(x, [Y, y], **kw), "ys"),
    "sliced_wasserstein": (lambda x, y, **kw: simgap.sliced_wasserstein(x, y, n_projections=8, **kw), "y"),
}
FUNCS = list(CALLS)
KERNEL_FUNCS = ["kernel_matrix", "kernel_contract", "mmd2", "mmd2_batch"]


def _call(func, x, y, **kw):
    return CALLS[func][0](x, y, **kw)


def _raises_naming(exc, arg, f, *args, **kw):
    with pytest.raises(exc, match=names(arg)):
        f(*args, **kw)


# ---------------------------------------------------------------------------------- x and y
@pytest.mark.parametrize("func", FUNCS)
def test_column_mismatch(func):
    y = _rng.standard_normal((5, 4))
    y_name = CALLS[func][1]
    with pytest.raises(ValueError, match=f"{names('x')}|{names(y_name)}"):
        _call(func, X, y)


BAD_ARRAYS = {
    "zero_rows": (np.zeros((0, 3)), ValueError),
    "one_d": (np.ones(3), ValueError),
    "three_d": (np.ones((4, 3, 1)), ValueError),
    "nan": (np.where(np.arange(18).reshape(6, 3) == 7, np.nan, 1.0), ValueError),
    "inf": (np.where(np.arange(18).reshape(6, 3) == 4, np.inf, 1.0), ValueError),
    "neg_inf_float32": (np.where(np.arange(18).reshape(6, 3) == 0, -np.inf, 1.0).astype(np.float32), ValueError),
    "complex": (np.ones((6, 3), dtype=np.complex128), TypeError),
    "object": (np.ones((6, 3)).astype(object), TypeError),
    "str": (np.full((6, 3), "1.0"), TypeError),
}


@pytest.mark.parametrize("bad", list(BAD_ARRAYS))
@pytest.mark.parametrize("func", FUNCS)
def test_bad_x(func, bad):
    arr, exc = BAD_ARRAYS[bad]
    _raises_naming(exc, "x", _call, func, arr, Y)


@pytest.mark.parametrize("bad", list(BAD_ARRAYS))
@pytest.mark.parametrize("func", FUNCS)
def test_bad_y(func, bad):
    arr, exc = BAD_ARRAYS[bad]
    _raises_naming(exc, CALLS[func][1], _call, func, X, arr)


@pytest.mark.parametrize("bad", ["zero_rows", "one_d", "three_d", "nan", "complex"])
@pytest.mark.parametrize("func", ["kernel_matrix", "median_bandwidth"])
def test_bad_x_alone(func, bad):
    arr, exc = BAD_ARRAYS[bad]
    f = simgap.kernel_matrix if func == "kernel_matrix" else simgap.median_bandwidth
    _raises_naming(exc, "x", f, arr)


def test_nan_in_torch_tensor():
    t = torch.ones(5, 2)
    t[3, 1] = float("nan")
    _raises_naming(ValueError, "y", simgap.mmd2, torch.ones(4, 2), t)


# ------------------------------------------------------------------------- unbiased needs 2 rows
def test_unbiased_needs_two_rows_in_x():
    _raises_naming(ValueError, "x", simgap.mmd2, X[:1], Y)
    _raises_naming(ValueError, "x", simgap.mmd2, X[:1], Y, estimator="unbiased")


def test_unbiased_needs_two_rows_in_y():
    _raises_naming(ValueError, "y", simgap.mmd2, X, Y[:1])


def test_unbiased_batch_needs_two_rows_in_each_y():
    _raises_naming(ValueError, "ys", simgap.mmd2_batch, X, [Y, Y[:1]])


def test_weighted_unbiased_one_row():
    with pytest.raises(ValueError, match=f"{names('x')}|{names('x_weights')}"):
        simgap.mmd2(X[:1], Y, x_weights=np.ones(1), estimator="unbiased")


def test_biased_accepts_one_row():
    got = simgap.mmd2(X[:1], Y[:1], estimator="biased", bandwidth=1.0)
    assert got == pytest.approx(ref.mmd2(X[:1], Y[:1], estimator="biased", bandwidth=1.0), rel=1e-10)


# ------------------------------------------------------------------------- bandwidth / kernel
@pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan"), [1.0, 0.0], (2.0, -0.5),
                                       np.array([1.0, np.nan])],
                         ids=["zero", "negative", "nan", "list_zero", "tuple_negative", "array_nan"])
@pytest.mark.parametrize("func", KERNEL_FUNCS)
def test_bad_bandwidth(func, bandwidth):
    _raises_naming(ValueError, "bandwidth", _call, func, X, Y, bandwidth=bandwidth)


@pytest.mark.parametrize("kernel", ["polynomial", "linear", "energy"])
@pytest.mark.parametrize("func", KERNEL_FUNCS)
def test_numeric_bandwidth_for_kernel_without_one(func, kernel):
    _raises_naming(ValueError, "bandwidth", _call, func, X, Y, kernel=kernel, bandwidth=1.0)
    _call(func, X, Y, kernel=kernel, bandwidth="median")  # "median" is ignored, not an error


@pytest.mark.parametrize("kernel", ["laplacian", "imq"])
@pytest.mark.parametrize("func", KERNEL_FUNCS)
def test_bandwidth_list_is_gaussian_only(func, kernel):
    _raises_naming(ValueError, "bandwidth", _call, func, X, Y, kernel=kernel, bandwidth=[0.5, 2.0])


@pytest.mark.parametrize("kernel", ["rbf", "", "gaussian "])
@pytest.mark.parametrize("func", KERNEL_FUNCS)
def test_unknown_kernel(func, kernel):
    _raises_naming(ValueError, "kernel", _call, func, X, Y, kernel=kernel)


@pytest.mark.parametrize("degree", [0, -2, 2.5])
def test_bad_polynomial_degree(degree):
    with pytest.raises((ValueError, TypeError), match=names("degree")):
        simgap.kernel_matrix(X, Y, kernel="polynomial", degree=degree)


def test_unknown_estimator():
    with pytest.raises(ValueError, match=names("estimator")):
        simgap.mmd2(X, Y, estimator="mle")


# ------------------------------------------------------------------------------------ weights
BAD_WEIGHTS = {
    "negative": (lambda n: np.r_[-0.5, np.ones(n - 1)], ValueError),
    "all_zero": (lambda n: np.zeros(n), ValueError),
    "too_short": (lambda n: np.ones(n - 1), ValueError),
    "too_long": (lambda n: np.ones(n + 1), ValueError),
    "nan": (lambda n: np.r_[np.nan, np.ones(n - 1)], ValueError),
    "inf": (lambda n: np.r_[np.ones(n - 1), np.inf], ValueError),
    "two_d": (lambda n: np.ones((n, 1)), ValueError),
    "complex": (lambda n: np.ones(n, dtype=np.complex128), TypeError),
    "str": (lambda n: np.full(n, "1"), TypeError),
}


@pytest.mark.parametrize("bad", list(BAD_WEIGHTS))
@pytest.mark.parametrize("side", ["x_weights", "y_weights"])
@pytest.mark.parametrize("func", ["mmd2", "sliced_wasserstein"])
def test_bad_sample_weights(func, side, bad):
    make, exc = BAD_WEIGHTS[bad]
    w = make(len(X) if side == "x_weights" else len(Y))
    f = simgap.mmd2 if func == "mmd2" else simgap.sliced_wasserstein
    _raises_naming(exc, side, f, X, Y, **{side: w})


@pytest.mark.parametrize("bad", ["negative", "all_zero", "too_short", "nan"])
def test_bad_batch_weights(bad):
    make, exc = BAD_WEIGHTS[bad]
    _raises_naming(exc, "x_weights", simgap.mmd2_batch, X, [Y], x_weights=make(len(X)))
    with pytest.raises(exc, match=names("ys_weights")):
        simgap.mmd2_batch(X, [Y, Y], ys_weights=[np.ones(len(Y)), make(len(Y))])


def test_batch_weights_list_length():
    with pytest.raises(ValueError, match=names("ys_weights")):
        simgap.mmd2_batch(X, [Y, Y], ys_weights=[np.ones(len(Y))])


@pytest.mark.parametrize("weights,exc", [
    (np.ones(4), ValueError),                       # rows != rows of y (5)
    (np.ones((6, 2)), ValueError),
    (np.ones((5, 2, 1)), ValueError),
    (np.r_[1.0, np.nan, 1.0, 1.0, 1.0], ValueError),
    (np.r_[1.0, 1.0, -np.inf, 1.0, 1.0], ValueError),
    (np.ones(5, dtype=np.complex64), TypeError),
], ids=["short", "rows", "three_d", "nan", "inf", "complex"])
def test_bad_contract_weights(weights, exc):
    _raises_naming(exc, "weights", simgap.kernel_contract, X, Y, weights)


def test_contract_weights_may_be_negative():
    w = np.array([1.0, -2.0, 0.0, 3.5, -0.1])
    got = simgap.kernel_contract(X, Y, w, bandwidth=1.0)
    np.testing.assert_allclose(got, ref.kernel_contract(X, Y, w, bandwidth=1.0), rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------------------ batch / sliced
@pytest.mark.parametrize("ys", [[], (), [np.ones(3)], [Y, np.ones((4, 2))], [Y, np.zeros((0, 3))],
                                [Y, np.full((3, 3), np.nan)]],
                         ids=["empty_list", "empty_tuple", "one_d", "wrong_d", "zero_rows", "nan"])
def test_bad_ys(ys):
    _raises_naming(ValueError, "ys", simgap.mmd2_batch, X, ys)


@pytest.mark.parametrize("n_projections,exc", [(0, ValueError), (-3, ValueError), (2.5, (TypeError, ValueError))])
def test_bad_n_projections(n_projections, exc):
    _raises_naming(exc, "n_projections", simgap.sliced_wasserstein, X, Y, n_projections=n_projections)


@pytest.mark.parametrize("p", [0.5, 0, -1, float("nan"), float("inf")])
def test_bad_p(p):
    _raises_naming(ValueError, "p", simgap.sliced_wasserstein, X, Y, p=p)


@pytest.mark.parametrize("projections,exc", [
    (np.ones((4, 6)), ValueError),            # d = 3, not 4
    (np.ones(3), ValueError),                 # 1-D
    (np.ones((3, 0)), ValueError),            # no directions
    (np.full((3, 2), np.nan), ValueError),
    (np.ones((3, 2), dtype=np.complex128), TypeError),
], ids=["wrong_d", "one_d", "empty", "nan", "complex"])
def test_bad_projections(projections, exc):
    _raises_naming(exc, "projections", simgap.sliced_wasserstein, X, Y, projections=projections)


@pytest.mark.parametrize("max_points", [0, -5])
def test_bad_max_points(max_points):
    _raises_naming(ValueError, "max_points", simgap.median_bandwidth, X, Y, max_points=max_points)


# ---------------------------------------------------------------------- accepted conversions
@pytest.mark.parametrize("kind", [np.bool_, np.int8, np.int32, np.int64, np.uint16])
def test_int_and_bool_equal_float64(kind):
    r = np.random.default_rng(7)
    x = r.integers(0, 2 if kind is np.bool_ else 6, size=(30, 4)).astype(kind)
    y = r.integers(0, 2 if kind is np.bool_ else 6, size=(25, 4)).astype(kind)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    assert simgap.mmd2(x, y) == pytest.approx(simgap.mmd2(xf, yf), rel=1e-12, abs=1e-15)
    assert simgap.mmd2(x, y) == pytest.approx(ref.mmd2(xf, yf), rel=1e-5, abs=1e-9)
    assert simgap.median_bandwidth(x, y) == pytest.approx(simgap.median_bandwidth(xf, yf), rel=1e-12)
    assert simgap.sliced_wasserstein(x, y) == pytest.approx(simgap.sliced_wasserstein(xf, yf), rel=1e-12)
    k = simgap.kernel_matrix(x, y, kernel="laplacian")
    assert k.dtype == np.float64
    np.testing.assert_allclose(k, simgap.kernel_matrix(xf, yf, kernel="laplacian"), rtol=1e-12)
    w = r.integers(0, 4, size=25)
    w[0] = 1
    assert simgap.mmd2(xf, yf, y_weights=w) == pytest.approx(
        simgap.mmd2(xf, yf, y_weights=w.astype(np.float64)), rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------------- devices
def test_cuda_tensor_without_cuda_build():
    if simgap.backends()["cuda"]:
        pytest.skip("this simgap build has CUDA")
    try:
        x = torch.ones(4, 3, device="cuda")
    except (RuntimeError, AssertionError):
        pytest.skip("cannot create CUDA tensors here")
    with pytest.raises(RuntimeError, match="(?i)rebuild"):
        simgap.mmd2(x, x.clone())


# -------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("call", [
    lambda x, p: simgap.mmd2(x, x + 1, precision=p),
    lambda x, p: simgap.mmd2_batch(x, [x + 1], precision=p),
    lambda x, p: simgap.mmd_test(x, x + 1, 10, precision=p),
    lambda x, p: simgap.kernel_matrix(x, precision=p),
    lambda x, p: simgap.kernel_contract(x, x, np.ones(len(x)), precision=p),
])
def test_precision_checked_and_tensor_cores_need_cuda(call):
    x = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match="precision must be one of"):
        call(x, "fp8")
    with pytest.raises(ValueError, match="precision must be one of"):
        call(x, None)
    for p in ("tf32", "bf16", "TF32"):
        with pytest.raises(ValueError, match="needs CUDA tensors"):
            call(x, p)
    call(x, "highest")


# ---- arrays whose dtype object is not NumPy's own (unpickled, byte-swapped) ---------------------

PER_ARRAY_CALLS = {
    **{name: call for name, (call, _) in CALLS.items()},
    "prdc": lambda x, y: simgap.prdc(x, y, k=2),
    "nearest_neighbors": lambda x, y: simgap.nearest_neighbors(x, y, k=2),
    "realism_score": lambda x, y: simgap.realism_score(x, y, k=2),
    "frechet_distance": lambda x, y: simgap.frechet_distance(x, y),
    "mmd_test": lambda x, y: simgap.mmd_test(x, y, 20, seed=0),
}


def _plain_result(v):
    if isinstance(v, simgap.MMDTestResult):
        return [v.statistic, v.p_value]
    if isinstance(v, dict):
        return [v[k] for k in sorted(v)]
    if isinstance(v, tuple):
        return [np.asarray(a, dtype=np.float64) for a in v]
    return [np.asarray(v, dtype=np.float64)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("func", list(PER_ARRAY_CALLS))
def test_unpickled_and_byteswapped_arrays_give_the_same_result(func, dtype):
    """An unpickled array (multiprocessing, torch.distributed objects, pickle files)
    carries a dtype object of its own; a big-endian one has non-native bytes. Both
    give the same values as the native array (they used to be refused with
    "dtype must be float32 or float64")."""
    import pickle

    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((40, 3)).astype(dtype), (rng.standard_normal((30, 3)) + 0.3).astype(dtype)
    want = _plain_result(PER_ARRAY_CALLS[func](x, y))
    unpickled = [pickle.loads(pickle.dumps(a)) for a in (x, y)]
    swapped = [a.astype(a.dtype.newbyteorder(">" if np.little_endian else "<")) for a in (x, y)]
    for xs, ys in (unpickled, swapped):
        got = _plain_result(PER_ARRAY_CALLS[func](xs, ys))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=0)


def test_the_binding_refuses_byteswapped_data_rather_than_misread_it():
    from simgap import _C

    x = np.ones((4, 2), dtype=">f8" if np.little_endian else "<f8")
    with pytest.raises(ValueError, match="dtype"):
        _C.knn(x, x, 1, None, True, True, np.empty((4, 1)), np.empty((4, 1), dtype=np.int64))


# ---- float32 data beyond float32's products: computed in float64 ------------------------------

@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_float32_data_at_extreme_magnitudes_is_computed_in_float64(scale):
    """float32 products of such data overflow or underflow (MMD^2 came out
    negative at 1e20 and 0 at 1e-20); they are computed in float64 and agree
    with the float64 result at scale 1 (these statistics are scale-free)."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((80, 5)), rng.standard_normal((70, 5)) + 0.3
    xs, ys = (x * scale).astype(np.float32), (y * scale).astype(np.float32)
    # What the float32 inputs hold, exactly, in float64 (their rounding is not the statistics' error).
    x64, y64 = xs.astype(np.float64) / scale, ys.astype(np.float64) / scale
    assert simgap.mmd2(xs, ys) == pytest.approx(simgap.mmd2(x64, y64), rel=1e-9)
    assert simgap.mmd2(torch.from_numpy(xs), torch.from_numpy(ys)) == pytest.approx(simgap.mmd2(x64, y64), rel=1e-9)
    assert simgap.prdc(xs, ys, k=4) == simgap.prdc(x64, y64, k=4)
    assert simgap.sliced_wasserstein(xs, ys, seed=0) / scale == pytest.approx(
        simgap.sliced_wasserstein(x64, y64, seed=0), rel=1e-9)
    k = simgap.kernel_matrix(xs[:4], ys[:3], bandwidth=scale)
    assert k.dtype == np.float64
    np.testing.assert_allclose(k, simgap.kernel_matrix(x64[:4], y64[:3], bandwidth=1.0), rtol=1e-12)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_float32_data_in_range_stays_float32(scale):
    x = (np.random.default_rng(4).standard_normal((6, 3)) * scale).astype(np.float32)
    assert simgap.kernel_matrix(x, bandwidth=scale).dtype == np.float32
    assert simgap.kernel_matrix(np.zeros((3, 2), np.float32), bandwidth=1.0).dtype == np.float32


@pytest.mark.parametrize("scale", [1e-150, 1e-100, 1e100, 1e150])
def test_frechet_distance_is_scale_equivariant_in_float64(scale):
    """FD(s x, s y) = s^2 FD(x, y): its Sigma_x^1/2 Sigma_y Sigma_x^1/2 term is of
    the data's scale to the fourth power, which overflowed (an exception) or
    underflowed (a silently wrong value) in float64."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((300, 4)), rng.standard_normal((250, 4)) * 1.3 + 0.2
    base = simgap.frechet_distance(x, y)
    assert simgap.frechet_distance(x * scale, y * scale) / scale**2 == pytest.approx(base, rel=1e-9)


# ---- the polynomial kernel's values beyond float32 / float64 ------------------------------------

POLY_CALLS = {
    "mmd2": lambda x, y, **kw: simgap.mmd2(x, y, **kw),
    "mmd2_batch": lambda x, y, **kw: simgap.mmd2_batch(x, [y, y[:20]], **kw),
    "mmd_test": lambda x, y, **kw: simgap.mmd_test(x, y, 30, seed=1, **kw).statistic,
    "kernel_matrix": lambda x, y, **kw: simgap.kernel_matrix(x[:5], y[:4], **kw),
    "kernel_contract": lambda x, y, **kw: simgap.kernel_contract(x, y, np.linspace(-1, 1, len(y)), **kw),
}


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("func", list(POLY_CALLS))
def test_polynomial_values_beyond_float32_are_computed_in_float64(func, as_tensor):
    """(gamma <x, y> + coef0)^degree overflowed float32 tiles (MMD^2 came out
    NaN for float32 data at scale 1e7); such inputs are computed in float64."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((60, 16)) * 1e7
    y = (rng.standard_normal((50, 16)) + 0.3) * 1e7
    xs, ys = x.astype(np.float32), y.astype(np.float32)
    want = np.asarray(POLY_CALLS[func](xs.astype(np.float64), ys.astype(np.float64), kernel="polynomial"))
    args = (torch.from_numpy(xs), torch.from_numpy(ys)) if as_tensor else (xs, ys)
    got = POLY_CALLS[func](*args, kernel="polynomial")
    assert np.isfinite(want).all() and np.abs(want).max() > 1e38
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=1e-9)
    if func == "kernel_matrix":
        assert got.dtype == np.float64


@pytest.mark.parametrize("func", list(POLY_CALLS))
def test_polynomial_values_beyond_float64_raise(func):
    x = np.random.default_rng(9).standard_normal((30, 4)) * 1e60
    with pytest.raises(ValueError, match="polynomial kernel's values reach about 1e3"):
        POLY_CALLS[func](x, x[:20] + 1.0, kernel="polynomial")


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

def test_huge_weights_are_normalised_not_zeroed():
    """Their sum overflowed to inf and every normalised weight became 0."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3))
    y = x[:7] + 1
    for func in (lambda **kw: simgap.mmd2(x, y, estimator="biased", **kw),
                 lambda **kw: simgap.sliced_wasserstein(x, y, **kw)):
        assert func(x_weights=np.full(10, 1e308)) == pytest.approx(func(), rel=1e-12)
        w = rng.random(10)
        assert func(x_weights=w * 1e308) == pytest.approx(func(x_weights=w), rel=1e-12)


@pytest.mark.parametrize("func", KERNEL_FUNCS)
def test_a_bandwidth_whose_square_underflows_is_refused(func):
    with pytest.raises(ValueError, match="bandwidth 1e-16. is too small"):
        _call(func, X, Y, bandwidth=1e-160)
    assert np.isfinite(np.asarray(_call(func, X, Y, bandwidth=1e-100), dtype=np.float64)).all()


SEEDED = {
    "mmd2_block": lambda seed: simgap.mmd2(X, Y, estimator="block", block_size=2, seed=seed),
    "mmd2_rff": lambda seed: simgap.mmd2(X, Y, estimator="rff", seed=seed),
    "mmd_test": lambda seed: simgap.mmd_test(X, Y, 10, seed=seed),
    "median_bandwidth": lambda seed: simgap.median_bandwidth(X, Y, seed=seed, max_points=4),
    "sliced_wasserstein": lambda seed: simgap.sliced_wasserstein(X, Y, seed=seed),
}


@pytest.mark.parametrize("seed, exc", [("a", TypeError), (1.5, TypeError), (-1, ValueError), (True, TypeError)])
@pytest.mark.parametrize("func", list(SEEDED))
def test_bad_seeds_are_named(func, seed, exc):
    with pytest.raises(exc, match="seed must be a non-negative integer or None"):
        SEEDED[func](seed)


@pytest.mark.parametrize("call, name", [
    (lambda: simgap.mmd2(X, Y, per_bandwidth="no"), "per_bandwidth"),
    (lambda: simgap.mmd2(X, Y, return_stderr="no"), "return_stderr"),
    (lambda: simgap.sliced_wasserstein(X, Y, return_per_projection="no"), "return_per_projection"),
])
def test_flags_must_be_bools(call, name):
    """A string such as "no" counted as True."""
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        call()
