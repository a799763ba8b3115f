"""mmd2, mmd2_batch and median_bandwidth against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simgap
import _reference as ref
from conftest import DEVICES, DTYPES, gap_pair, rtol, to_device

KERNELS = ref.KERNELS

# (n, m, d): tiny, n != m, wide, long.
MMD_SHAPES = [(2, 2, 1), (7, 5, 3), (97, 130, 64), (1025, 1000, 3), (300, 257, 513)]
SHAPE_IDS = [f"{n}x{m}x{d}" for n, m, d in MMD_SHAPES]


def _bw(kernel, x, y):
    return 0.9 * ref.median_bandwidth(x, y) if kernel in ref.BANDWIDTH_KERNELS else None


def _kw(kernel, bandwidth):
    return {"kernel": kernel} if bandwidth is None else {"kernel": kernel, "bandwidth": bandwidth}


def term_scale(x, y, **kw) -> float:
    """Size of the kernel terms MMD^2 is a difference of (mean |k| over the three blocks)."""
    return max(float(np.mean(np.abs(ref.kernel_matrix(a, b, **kw)))) for a, b in [(x, x), (y, y), (x, y)])


def assert_mmd_close(got, expected, dtype, scale, slack=0.01):
    """|got - expected| <= r (|expected| + slack * scale).

    With a real gap (MMD^2 comparable to the kernel terms) the relative part dominates; ``slack=1``
    is for cases where MMD^2 is near zero and only an error relative to the terms is meaningful.
    """
    assert isinstance(got, float)
    r = rtol(dtype)
    assert abs(got - expected) <= r * (abs(expected) + slack * scale), (got, expected)


def _slack(n, m):
    return 1.0 if min(n, m) < 50 else 0.01  # tiny samples: MMD^2 is noise around the terms' size


# ------------------------------------------------------------------------------------- mmd2
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", MMD_SHAPES, ids=SHAPE_IDS)
def test_mmd2_unbiased(shape, kernel, dtype, device, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    bw = _bw(kernel, x, y)
    got = simgap.mmd2(to_device(x, device), to_device(y, device), **_kw(kernel, bw))
    expected = ref.mmd2(x, y, kernel=kernel, bandwidth=bw, estimator="unbiased")
    assert_mmd_close(got, expected, dtype, term_scale(x, y, **_kw(kernel, bw)), _slack(n, m))
    explicit = simgap.mmd2(to_device(x, device), to_device(y, device), estimator="unbiased",
                           **_kw(kernel, bw))
    assert explicit == pytest.approx(got, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", [(1, 3, 2)] + MMD_SHAPES, ids=["1x3x2"] + SHAPE_IDS)
def test_mmd2_biased(shape, kernel, dtype, device, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    bw = _bw(kernel, x, y)
    got = simgap.mmd2(to_device(x, device), to_device(y, device), estimator="biased",
                      **_kw(kernel, bw))
    expected = ref.mmd2(x, y, kernel=kernel, bandwidth=bw, estimator="biased")
    assert_mmd_close(got, expected, dtype, term_scale(x, y, **_kw(kernel, bw)), _slack(n, m))


def _weights(rng, n, zeros=True):
    w = rng.random(n) * 3.0
    if zeros and n > 3:
        w[rng.choice(n, size=n // 4, replace=False)] = 0.0  # zero weights are allowed
    return w


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("which", ["both", "x_only", "y_only"])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("shape", [(2, 3, 2), (97, 130, 64), (600, 411, 5)], ids=["2x3x2", "97x130x64",
                                                                                   "600x411x5"])
def test_mmd2_weighted(shape, estimator, which, kernel, dtype, device, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    a = _weights(rng, n) if which in ("both", "x_only") else None
    b = _weights(rng, m) if which in ("both", "y_only") else None
    bw = _bw(kernel, x, y)
    got = simgap.mmd2(to_device(x, device), to_device(y, device), estimator=estimator,
                      x_weights=None if a is None else to_device(a, device),
                      y_weights=None if b is None else to_device(b, device), **_kw(kernel, bw))
    expected = ref.mmd2(x, y, kernel=kernel, bandwidth=bw, estimator=estimator, x_weights=a,
                        y_weights=b)
    assert_mmd_close(got, expected, dtype, term_scale(x, y, **_kw(kernel, bw)), _slack(n, m))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_weights_default_to_biased(dtype, rng):
    x, y = gap_pair(rng, 40, 30, 3, dtype)
    a, b = _weights(rng, 40), _weights(rng, 30)
    got = simgap.mmd2(x, y, x_weights=a, y_weights=b, bandwidth=1.0)
    biased = ref.mmd2(x, y, bandwidth=1.0, x_weights=a, y_weights=b, estimator="biased")
    unbiased = ref.mmd2(x, y, bandwidth=1.0, x_weights=a, y_weights=b, estimator="unbiased")
    scale = term_scale(x, y, kernel="gaussian", bandwidth=1.0)
    assert abs(biased - unbiased) > 100 * rtol(dtype) * scale  # the two are told apart here
    assert_mmd_close(got, biased, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_no_weights_default_to_unbiased(dtype, rng):
    x, y = gap_pair(rng, 30, 20, 3, dtype)
    got = simgap.mmd2(x, y, bandwidth=1.0)
    unbiased = ref.mmd2(x, y, bandwidth=1.0, estimator="unbiased")
    biased = ref.mmd2(x, y, bandwidth=1.0, estimator="biased")
    scale = term_scale(x, y, kernel="gaussian", bandwidth=1.0)
    assert abs(biased - unbiased) > 100 * rtol(dtype) * scale
    assert_mmd_close(got, unbiased, dtype, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
def test_mmd2_default_bandwidth_is_median(kernel, dtype, rng):
    x, y = gap_pair(rng, 150, 120, 6, dtype)
    got = simgap.mmd2(x, y, kernel=kernel)
    med = ref.median_bandwidth(x, y)
    expected = ref.mmd2(x, y, kernel=kernel, bandwidth=med)
    assert_mmd_close(got, expected, dtype, term_scale(x, y, kernel=kernel, bandwidth=med))
    other = ref.mmd2(x, y, kernel=kernel, bandwidth=2.0 * med)
    assert abs(other - expected) > 100 * rtol(dtype) * abs(expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bandwidth", [0.3, 2.5, [0.3], [0.2, 1.0, 5.0], (0.5, 4.0)],
                         ids=["f0.3", "f2.5", "list1", "list3", "tuple2"])
def test_mmd2_gaussian_bandwidth_float_and_list(bandwidth, dtype, rng):
    x, y = gap_pair(rng, 120, 90, 4, dtype)
    got = simgap.mmd2(x, y, bandwidth=bandwidth)
    expected = ref.mmd2(x, y, bandwidth=bandwidth)
    assert_mmd_close(got, expected, dtype, term_scale(x, y, kernel="gaussian", bandwidth=bandwidth))
    got_b = simgap.mmd2(x, y, bandwidth=bandwidth, estimator="biased")
    expected_b = ref.mmd2(x, y, bandwidth=bandwidth, estimator="biased")
    assert_mmd_close(got_b, expected_b, dtype, term_scale(x, y, kernel="gaussian", bandwidth=bandwidth))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["laplacian", "imq"])
def test_mmd2_float_bandwidth_other_kernels(kernel, dtype, rng):
    x, y = gap_pair(rng, 120, 90, 4, dtype)
    for bw in (0.4, 3.0):
        got = simgap.mmd2(x, y, kernel=kernel, bandwidth=bw)
        expected = ref.mmd2(x, y, kernel=kernel, bandwidth=bw)
        assert_mmd_close(got, expected, dtype, term_scale(x, y, kernel=kernel, bandwidth=bw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_polynomial_parameters(dtype, rng):
    x, y = gap_pair(rng, 80, 60, 5, dtype)
    kw = dict(kernel="polynomial", gamma=0.4, coef0=0.5, degree=2)
    got = simgap.mmd2(x, y, **kw)
    expected = ref.mmd2(x, y, **kw)
    assert_mmd_close(got, expected, dtype, term_scale(x, y, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_same_distribution_is_near_zero(dtype, rng):
    x = rng.standard_normal((400, 3)).astype(dtype)
    y = rng.standard_normal((350, 3)).astype(dtype)
    got = simgap.mmd2(x, y, bandwidth=1.0)
    expected = ref.mmd2(x, y, bandwidth=1.0)
    assert_mmd_close(got, expected, dtype, term_scale(x, y, kernel="gaussian", bandwidth=1.0), slack=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_torch_cpu_tensors(dtype, rng):
    x, y = gap_pair(rng, 64, 50, 7, dtype)
    a = _weights(rng, 64)
    got = simgap.mmd2(torch.from_numpy(x), torch.from_numpy(y), x_weights=torch.from_numpy(a))
    expected = ref.mmd2(x, y, x_weights=a)
    assert_mmd_close(got, expected, dtype, term_scale(x, y, kernel="gaussian"))


@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd2_mixed_float32_float64_computes_in_float64(kernel, rng):
    x, y = gap_pair(rng, 90, 70, 5, np.float64)
    x32 = x.astype(np.float32)
    bw = _bw(kernel, x32, y)
    got = simgap.mmd2(x32, y, **_kw(kernel, bw))
    expected = ref.mmd2(x32, y, kernel=kernel, bandwidth=bw)
    assert_mmd_close(got, expected, np.float64, term_scale(x32, y, **_kw(kernel, bw)))


# ------------------------------------------------------------------------------- mmd2_batch
def _batch(rng, dtype, d=4):
    x = rng.standard_normal((120, d))
    ys = [rng.standard_normal((90, d)) + 0.5,
          4.0 * rng.standard_normal((60, d)),  # a different scale: its own median would differ
          rng.standard_normal((2, d)) - 1.0,
          rng.standard_normal((257, d))]
    return x.astype(dtype), [y.astype(dtype) for y in ys]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("estimator", [None, "biased"])
def test_mmd2_batch_equals_loop_fixed_bandwidth(estimator, kernel, dtype, device, rng):
    x, ys = _batch(rng, dtype)
    bw = 1.7 if kernel in ref.BANDWIDTH_KERNELS else None
    kw = _kw(kernel, bw)
    got = simgap.mmd2_batch(to_device(x, device), [to_device(y, device) for y in ys],
                            estimator=estimator, **kw)
    assert isinstance(got, np.ndarray)
    assert got.shape == (len(ys),) and got.dtype == np.float64
    loop = [simgap.mmd2(to_device(x, device), to_device(y, device), estimator=estimator, **kw)
            for y in ys]
    for g, l, y in zip(got, loop, ys):
        expected = ref.mmd2(x, y, estimator=estimator, **kw)
        scale = term_scale(x, y, **kw)
        assert abs(g - l) <= rtol(dtype) * 1e-2 * (abs(l) + scale)
        assert_mmd_close(float(g), expected, dtype, scale, slack=_slack(len(x), len(y)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
def test_mmd2_batch_median_is_shared(kernel, dtype, rng):
    x, ys = _batch(rng, dtype)
    got = simgap.mmd2_batch(x, ys, kernel=kernel)
    shared = ref.median_bandwidth(x, np.vstack(ys))
    for g, y in zip(got, ys):
        expected = ref.mmd2(x, y, kernel=kernel, bandwidth=shared)
        scale = term_scale(x, y, kernel=kernel, bandwidth=shared)
        assert_mmd_close(float(g), expected, dtype, scale, slack=_slack(len(x), len(y)))
    # Per-pair medians would give a different answer for the wide second set.
    own = ref.mmd2(x, ys[1], kernel=kernel, bandwidth=ref.median_bandwidth(x, ys[1]))
    assert abs(own - got[1]) > 20 * rtol(dtype) * abs(own)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_batch_median_subsampled(dtype, rng):
    """Pooled rows > max_points: the subsample is drawn from x stacked on ys in order."""
    x = rng.standard_normal((900, 3))
    ys = [rng.standard_normal((800, 3)) + 0.5, 2.0 * rng.standard_normal((700, 3))]
    x, ys = x.astype(dtype), [y.astype(dtype) for y in ys]
    got = simgap.mmd2_batch(x, ys, estimator="biased")
    shared = ref.median_bandwidth(x, np.vstack(ys))
    for g, y in zip(got, ys):
        expected = ref.mmd2(x, y, bandwidth=shared, estimator="biased")
        assert_mmd_close(float(g), expected, dtype, term_scale(x, y, kernel="gaussian", bandwidth=shared))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", [None, "biased", "unbiased"])
def test_mmd2_batch_weights_equal_loop(estimator, dtype, rng):
    x, ys = _batch(rng, dtype)
    a = _weights(rng, len(x))
    bs = [_weights(rng, len(y), zeros=len(y) > 3) for y in ys]
    got = simgap.mmd2_batch(x, ys, bandwidth=[0.5, 2.0], estimator=estimator, x_weights=a,
                            ys_weights=bs)
    for g, y, b in zip(got, ys, bs):
        loop = simgap.mmd2(x, y, bandwidth=[0.5, 2.0], estimator=estimator, x_weights=a, y_weights=b)
        expected = ref.mmd2(x, y, bandwidth=[0.5, 2.0], estimator=estimator, x_weights=a, y_weights=b)
        scale = term_scale(x, y, kernel="gaussian", bandwidth=[0.5, 2.0])
        assert abs(g - loop) <= rtol(dtype) * 1e-2 * (abs(loop) + scale)
        assert_mmd_close(float(g), expected, dtype, scale, slack=_slack(len(x), len(y)))


def test_mmd2_batch_accepts_tuple(rng):
    x, ys = _batch(rng, np.float64)
    got = simgap.mmd2_batch(x, tuple(ys), bandwidth=1.0)
    np.testing.assert_allclose(got, [ref.mmd2(x, y, bandwidth=1.0) for y in ys], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------- median_bandwidth
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", [(2, None, 1), (3, None, 2), (4, None, 3), (7, None, 5),
                                   (5, 2, 3), (100, 61, 64), (1000, 999, 3), (300, 200, 513)])
def test_median_bandwidth_matches_reference(n, m, d, dtype, rng):
    x = (rng.standard_normal((n, d)) * rng.random(d) * 3 + 1.0).astype(dtype)
    y = None if m is None else (rng.standard_normal((m, d)) + 2.0).astype(dtype)
    got = simgap.median_bandwidth(x, y)
    assert isinstance(got, float)
    assert got == pytest.approx(ref.median_bandwidth(x, y), rel=rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 12345])
@pytest.mark.parametrize("max_points", [10, 300, 2000])
def test_median_bandwidth_subsample(max_points, seed, dtype, rng):
    # Heavy-tailed rows so different subsamples give clearly different medians.
    x = rng.standard_t(1.5, size=(1500, 3)).astype(dtype)
    y = (rng.standard_t(1.5, size=(1200, 3)) * 4.0).astype(dtype)
    expected = ref.median_bandwidth(x, y, max_points=max_points, seed=seed)
    other_seed = ref.median_bandwidth(x, y, max_points=max_points, seed=seed + 1)
    full = ref.median_bandwidth(x, y, max_points=10_000)
    assert abs(expected - other_seed) > 10 * rtol(dtype) * expected
    assert abs(expected - full) > 10 * rtol(dtype) * expected
    got = simgap.median_bandwidth(x, y, max_points=max_points, seed=seed)
    assert got == pytest.approx(expected, rel=rtol(dtype))
    if max_points == 2000:  # the default
        assert simgap.median_bandwidth(x, y, seed=seed) == got


def test_median_bandwidth_default_subsample_rule(rng):
    x = rng.standard_t(1.5, size=(2500, 2))
    expected = ref.median_bandwidth(x)
    assert abs(expected - ref.median_bandwidth(x, max_points=10_000)) > 1e-6 * expected
    assert simgap.median_bandwidth(x) == pytest.approx(expected, rel=1e-5)


def test_median_bandwidth_zero_median_uses_positive_distances():
    # 5 identical rows and 2 others: most of the 21 distances are 0.
    x = np.array([[0.0, 0.0]] * 5 + [[3.0, 4.0], [6.0, 8.0]])
    expected = ref.median_bandwidth(x)
    assert expected == pytest.approx(5.0)  # positive distances: 5 x 5 (to (3,4)), 5 x 10, one 5
    assert simgap.median_bandwidth(x) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("x,y", [(np.ones((6, 3)), None), (np.ones((3, 2)), np.ones((4, 2))),
                                 (np.zeros((1, 4)), None)], ids=["identical", "identical_xy", "one_row"])
def test_median_bandwidth_no_positive_distance_is_one(x, y):
    assert simgap.median_bandwidth(x, y) == 1.0


def test_median_bandwidth_even_count_averages_middle_pair():
    # 4 points on a line: 6 distances 1, 2, 3, 4, 6, 7 -> the median is (3 + 4) / 2.
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert ref.median_bandwidth(x) == 3.5
    assert simgap.median_bandwidth(x) == pytest.approx(3.5, rel=1e-12)
    # ... and an odd count (3 points, distances 1, 2, 3) takes the middle one.
    assert simgap.median_bandwidth(x[:3]) == pytest.approx(2.0, rel=1e-12)


def test_median_bandwidth_torch_and_mixed(rng):
    x = rng.standard_normal((50, 3))
    y = rng.standard_normal((40, 3)).astype(np.float32)
    expected = ref.median_bandwidth(x, y)
    assert simgap.median_bandwidth(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
        expected, rel=1e-5)
