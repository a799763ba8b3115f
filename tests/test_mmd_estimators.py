"""mmd2's estimators beyond the exact U/V-statistic: block, linear, rff, standard errors, per_bandwidth.

The block and linear estimators and the exact estimator's standard error are compared with the plain
float64 references below (same seeded row order as documented in ``simgap.mmd2``); the rff estimator,
being random in its frequencies, gets statistical checks against the exact value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import simgap
import simgap._estimators
import _reference as ref
from conftest import DTYPES, gap_pair, rtol

KERNELS = ref.KERNELS


# ------------------------------------------------------------------------------- references
def _bw(kernel, x, y):
    return 0.9 * ref.median_bandwidth(x, y) if kernel in ref.BANDWIDTH_KERNELS else None


def _kw(kernel, bandwidth):
    return {"kernel": kernel} if bandwidth is None else {"kernel": kernel, "bandwidth": bandwidth}


def _gram(x, y, **kw):
    """The three float64 kernel matrices (xx, yy, xy) and their scale max|k|."""
    kxx, kyy, kxy = (ref.kernel_matrix(a, b, **kw) for a, b in ((x, x), (y, y), (x, y)))
    scale = max(float(np.max(np.abs(k))) for k in (kxx, kyy, kxy))
    return kxx, kyy, kxy, scale


def _mean_and_stderr(values):
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return float(values.mean()), se


def block_reference(x, y, block_size, seed, **kw):
    """Block (B-test) estimate: mean of the unbiased MMD^2 of blocks of a seeded row order.

    rng = default_rng(seed); ix = rng.permutation(n)[:nb*B]; iy = rng.permutation(m)[:nb*B];
    block b pairs x[ix[bB:(b+1)B]] with y[iy[bB:(b+1)B]].  Returns (mean, std(ddof=1)/sqrt(nb), nb).
    """
    x, y = ref.as_f64(x), ref.as_f64(y)
    n, m, B = len(x), len(y), block_size
    nb = min(n, m) // B
    rng = np.random.default_rng(seed)
    ix = rng.permutation(n)[: nb * B]
    iy = rng.permutation(m)[: nb * B]
    kxx, kyy, kxy, _ = _gram(x, y, **kw)
    values = []
    for b in range(nb):
        bx, by = ix[b * B : (b + 1) * B], iy[b * B : (b + 1) * B]
        sxx = kxx[np.ix_(bx, bx)]
        syy = kyy[np.ix_(by, by)]
        values.append((sxx.sum() - np.trace(sxx)) / (B * (B - 1))
                      + (syy.sum() - np.trace(syy)) / (B * (B - 1))
                      - 2.0 * kxy[np.ix_(bx, by)].mean())
    return (*_mean_and_stderr(values), nb)


def linear_reference(x, y, seed, **kw):
    """Linear-time estimate: mean over disjoint pairs of h = k(x1,x2) + k(y1,y2) - k(x1,y2) - k(x2,y1).

    rng = default_rng(seed); ix = rng.permutation(n)[:2P]; iy = rng.permutation(m)[:2P], P = min(n,m)//2;
    pair p is (x[ix[2p]], x[ix[2p+1]]) with (y[iy[2p]], y[iy[2p+1]]).  Returns (mean, stderr, P).
    """
    x, y = ref.as_f64(x), ref.as_f64(y)
    n, m = len(x), len(y)
    npairs = min(n, m) // 2
    rng = np.random.default_rng(seed)
    ix = rng.permutation(n)[: 2 * npairs]
    iy = rng.permutation(m)[: 2 * npairs]
    kxx, kyy, kxy, _ = _gram(x, y, **kw)
    x1, x2, y1, y2 = ix[0::2], ix[1::2], iy[0::2], iy[1::2]
    h = kxx[x1, x2] + kyy[y1, y2] - kxy[x1, y2] - kxy[x2, y1]
    return (*_mean_and_stderr(h), npairs)


def exact_stderr_reference(x, y, unbiased=True, **kw):
    """First-order (H-decomposition) standard error of the exact estimator, unweighted.

    f_i = mean_{j(!=i)} k(x_i, x_j) - mean_j k(x_i, y_j), g_j likewise;
    se = sqrt(4 var(f, ddof=1) / n + 4 var(g, ddof=1) / m).
    """
    x, y = ref.as_f64(x), ref.as_f64(y)
    n, m = len(x), len(y)
    kxx, kyy, kxy, _ = _gram(x, y, **kw)
    if unbiased:
        fx = (kxx.sum(axis=1) - np.diag(kxx)) / (n - 1)
        gy = (kyy.sum(axis=1) - np.diag(kyy)) / (m - 1)
    else:
        fx, gy = kxx.mean(axis=1), kyy.mean(axis=1)
    f = fx - kxy.mean(axis=1)
    g = gy - kxy.mean(axis=0)
    return float(np.sqrt(4.0 * f.var(ddof=1) / n + 4.0 * g.var(ddof=1) / m))


def assert_estimate_close(got, expected, dtype, scale, count):
    """Value and stderr of an average of ``count`` kernel combinations, each with error <= 4 r scale.

    The value may err by up to 4 r scale; the standard deviation of the per-term errors bounds the
    error of std / sqrt(count) by 4 r scale / sqrt(count).
    """
    (value, se), (value_ref, se_ref) = got, expected
    r = rtol(dtype)
    assert isinstance(value, float) and isinstance(se, float)
    assert abs(value - value_ref) <= r * (abs(value_ref) + 4.0 * scale), (value, value_ref)
    if math.isnan(se_ref):
        assert math.isnan(se)
    else:
        assert abs(se - se_ref) <= r * (se_ref + 4.0 * scale / np.sqrt(count)), (se, se_ref)


# ------------------------------------------------------------------------------------ block
# (n, m, d, block_size): blocks of 2 and 3, a block as large as a sample, ragged leftovers.
BLOCK_CASES = [(7, 9, 3, 2), (7, 8, 1, 3), (101, 90, 5, 3), (257, 300, 33, 2), (1000, 613, 8, 50)]
BLOCK_IDS = [f"{n}x{m}x{d}-B{b}" for n, m, d, b in BLOCK_CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", BLOCK_CASES, ids=BLOCK_IDS)
def test_block_matches_reference(case, kernel, dtype, rng):
    n, m, d, block = case
    x, y = gap_pair(rng, n, m, d, dtype)
    bw = _bw(kernel, x, y)
    seed = int(rng.integers(1 << 30))
    got = simgap.mmd2(x, y, estimator="block", block_size=block, seed=seed, return_stderr=True,
                      **_kw(kernel, bw))
    value, se, nb = block_reference(x, y, block, seed, **_kw(kernel, bw))
    scale = _gram(x, y, **_kw(kernel, bw))[3]
    assert_estimate_close(got, (value, se), dtype, scale, nb)
    # Without return_stderr: the same value, as a plain float.
    alone = simgap.mmd2(x, y, estimator="block", block_size=block, seed=seed, **_kw(kernel, bw))
    assert isinstance(alone, float) and alone == got[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_row_order_follows_seed(dtype, rng):
    """Another seed gives another estimate; that estimate is the reference's for that seed."""
    x, y = gap_pair(rng, 203, 190, 4, dtype)
    scale = _gram(x, y, bandwidth=1.3)[3]
    got = {s: simgap.mmd2(x, y, estimator="block", block_size=7, seed=s, bandwidth=1.3,
                          return_stderr=True) for s in (0, 1, 12345)}
    assert len({v for v, _ in got.values()}) == 3
    for s, pair in got.items():
        value, se, nb = block_reference(x, y, 7, s, bandwidth=1.3)
        assert_estimate_close(pair, (value, se), dtype, scale, nb)
    again = simgap.mmd2(x, y, estimator="block", block_size=7, seed=1, bandwidth=1.3, return_stderr=True)
    assert again == got[1]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "energy"])
def test_block_of_whole_sample_is_exact_unbiased(kernel, dtype, rng):
    """n == m == block_size: one block holding every row, i.e. the exact U-statistic."""
    x, y = gap_pair(rng, 41, 41, 6, dtype)
    bw = _bw(kernel, x, y)
    got = simgap.mmd2(x, y, estimator="block", block_size=41, **_kw(kernel, bw))
    expected = ref.mmd2(x, y, estimator="unbiased", **_kw(kernel, bw))
    scale = _gram(x, y, **_kw(kernel, bw))[3]
    assert abs(got - expected) <= rtol(dtype) * (abs(expected) + scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_default_median_and_multiscale(dtype, rng):
    x, y = gap_pair(rng, 150, 133, 5, dtype)
    med = ref.median_bandwidth(x, y)
    got = simgap.mmd2(x, y, estimator="block", block_size=10, seed=3, return_stderr=True)
    value, se, nb = block_reference(x, y, 10, 3, bandwidth=med)
    assert_estimate_close(got, (value, se), dtype, _gram(x, y, bandwidth=med)[3], nb)
    sig = [0.5, 2.0, 6.0]
    got = simgap.mmd2(x, y, estimator="block", block_size=10, seed=3, bandwidth=sig, return_stderr=True)
    value, se, nb = block_reference(x, y, 10, 3, bandwidth=sig)
    assert_estimate_close(got, (value, se), dtype, _gram(x, y, bandwidth=sig)[3], nb)


# ----------------------------------------------------------------------------------- linear
LINEAR_SHAPES = [(2, 2, 1), (7, 5, 3), (4, 11, 2), (97, 130, 64), (1000, 999, 5)]
LINEAR_IDS = [f"{n}x{m}x{d}" for n, m, d in LINEAR_SHAPES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=LINEAR_IDS)
def test_linear_matches_reference(shape, kernel, dtype, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    bw = _bw(kernel, x, y)
    seed = int(rng.integers(1 << 30))
    got = simgap.mmd2(x, y, estimator="linear", seed=seed, return_stderr=True, **_kw(kernel, bw))
    value, se, npairs = linear_reference(x, y, seed, **_kw(kernel, bw))
    scale = _gram(x, y, **_kw(kernel, bw))[3]
    assert_estimate_close(got, (value, se), dtype, scale, npairs)
    alone = simgap.mmd2(x, y, estimator="linear", seed=seed, **_kw(kernel, bw))
    assert isinstance(alone, float) and alone == got[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_row_order_follows_seed(dtype, rng):
    x, y = gap_pair(rng, 301, 250, 3, dtype)
    scale = _gram(x, y, bandwidth=0.8)[3]
    values = []
    for s in (0, 7, 99):
        got = simgap.mmd2(x, y, estimator="linear", seed=s, bandwidth=0.8, return_stderr=True)
        value, se, npairs = linear_reference(x, y, s, bandwidth=0.8)
        assert_estimate_close(got, (value, se), dtype, scale, npairs)
        values.append(got[0])
    assert len(set(values)) == 3


# -------------------------------------------------------------------- exact standard error
EXACT_SHAPES = [(7, 5, 3), (97, 130, 8), (400, 301, 5)]
EXACT_IDS = [f"{n}x{m}x{d}" for n, m, d in EXACT_SHAPES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "exact", "biased"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", EXACT_SHAPES, ids=EXACT_IDS)
def test_exact_stderr_matches_reference(shape, kernel, estimator, dtype, rng):
    n, m, d = shape
    x, y = gap_pair(rng, n, m, d, dtype)
    bw = _bw(kernel, x, y)
    value, se = simgap.mmd2(x, y, estimator=estimator, return_stderr=True, **_kw(kernel, bw))
    unbiased = estimator != "biased"
    value_ref = ref.mmd2(x, y, estimator="unbiased" if unbiased else "biased", **_kw(kernel, bw))
    se_ref = exact_stderr_reference(x, y, unbiased=unbiased, **_kw(kernel, bw))
    scale = _gram(x, y, **_kw(kernel, bw))[3]
    r = rtol(dtype)
    assert isinstance(value, float) and isinstance(se, float)
    assert abs(value - value_ref) <= r * (abs(value_ref) + scale), (value, value_ref)
    # f_i, g_j are means of kernel values (error <= 2 r scale each):
    # se errs by at most 4 r scale sqrt(1/n + 1/m).
    assert abs(se - se_ref) <= r * (se_ref + 4.0 * scale * np.sqrt(1.0 / n + 1.0 / m)), (se, se_ref)
    # The value does not depend on whether the standard error is asked for.
    plain = simgap.mmd2(x, y, estimator=estimator, **_kw(kernel, bw))
    assert abs(plain - value) <= r * (abs(value_ref) + scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_stderr_uniform_weights_equal_unweighted(dtype, rng):
    """Explicit uniform weights (estimator='unbiased') give the unweighted U-statistic and stderr."""
    x, y = gap_pair(rng, 57, 43, 4, dtype)
    plain = simgap.mmd2(x, y, bandwidth=1.1, return_stderr=True)
    weighted = simgap.mmd2(x, y, bandwidth=1.1, estimator="unbiased", x_weights=np.full(57, 2.0),
                           y_weights=np.ones(43), return_stderr=True)
    se_ref = exact_stderr_reference(x, y, bandwidth=1.1)
    r = rtol(dtype)
    assert weighted[0] == pytest.approx(plain[0], rel=r, abs=r * 1.0)
    assert weighted[1] == pytest.approx(se_ref, rel=r, abs=r * 1e-2)
    assert plain[1] == pytest.approx(se_ref, rel=r, abs=r * 1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_exact_stderr_weighted_value_matches_reference(estimator, dtype, rng):
    x, y = gap_pair(rng, 80, 61, 3, dtype)
    a, b = rng.random(80) + 0.1, rng.random(61) + 0.1
    value, se = simgap.mmd2(x, y, bandwidth=1.4, estimator=estimator, x_weights=a, y_weights=b,
                            return_stderr=True)
    expected = ref.mmd2(x, y, bandwidth=1.4, estimator=estimator, x_weights=a, y_weights=b)
    assert abs(value - expected) <= rtol(dtype) * (abs(expected) + 1.0)
    # Non-uniform weights inflate the spread relative to the unweighted case, never collapse it.
    assert se > 0.5 * exact_stderr_reference(x, y, unbiased=estimator == "unbiased", bandwidth=1.4)


def test_exact_stderr_calibrated_under_alternative():
    """Across independent samples with a real gap, the spread of the exact estimate ~ its stderr."""
    values, errors = [], []
    for s in range(30):
        g = np.random.default_rng(1000 + s)
        x = g.standard_normal((200, 5))
        y = g.standard_normal((200, 5))
        y[:, 0] += 0.6
        v, se = simgap.mmd2(x, y, bandwidth=2.0, return_stderr=True)
        values.append(v)
        errors.append(se)
    ratio = np.std(values, ddof=1) / np.mean(errors)
    assert 0.7 < ratio < 1.5, ratio


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_exact_stderr_weighted_calibrated_under_alternative(estimator):
    """Weighted estimators: the spread over independent samples (and weights) ~ the reported stderr."""
    values, errors = [], []
    for s in range(30):
        g = np.random.default_rng(2000 + s)
        x = g.standard_normal((200, 4))
        y = g.standard_normal((180, 4))
        y[:, :2] += 0.5
        a = g.exponential(size=200)
        b = g.exponential(size=180)
        v, se = simgap.mmd2(x, y, bandwidth=2.0, estimator=estimator, x_weights=a, y_weights=b,
                            return_stderr=True)
        values.append(v)
        errors.append(se)
    ratio = np.std(values, ddof=1) / np.mean(errors)
    assert 0.7 < ratio < 1.5, ratio


# ------------------------------------------------------------------------------ per_bandwidth
SIGMAS = [0.4, 1.5, 6.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_per_bandwidth_exact_equals_single_calls(estimator, dtype, rng):
    x, y = gap_pair(rng, 131, 97, 6, dtype)
    got = simgap.mmd2(x, y, bandwidth=SIGMAS, estimator=estimator, per_bandwidth=True)
    assert isinstance(got, np.ndarray) and got.shape == (3,) and got.dtype == np.float64
    r = rtol(dtype)
    for k, s in enumerate(SIGMAS):
        single = simgap.mmd2(x, y, bandwidth=s, estimator=estimator)
        expected = ref.mmd2(x, y, bandwidth=s, estimator=estimator)
        assert got[k] == pytest.approx(single, rel=1e-9, abs=1e-12)
        assert abs(got[k] - expected) <= r * (abs(expected) + 1.0)
    # The summed kernel's MMD^2 is the sum of the per-bandwidth values (MMD^2 is linear in k).
    # (the summed kernel is evaluated in the input dtype: dtype tolerance at the terms' scale, 3).
    summed = simgap.mmd2(x, y, bandwidth=SIGMAS, estimator=estimator)
    assert abs(summed - got.sum()) <= r * (abs(got.sum()) + len(SIGMAS))
    # The values really differ per bandwidth (one value repeated three times would not pass).
    assert np.ptp(got) > 100 * r * np.max(np.abs(got))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased", "block", "linear"])
def test_per_bandwidth_with_stderr_equals_single_calls(estimator, dtype, rng):
    x, y = gap_pair(rng, 120, 101, 4, dtype)
    opts = dict(estimator=estimator, block_size=9, seed=5)
    values, errors = simgap.mmd2(x, y, bandwidth=SIGMAS, per_bandwidth=True, return_stderr=True, **opts)
    assert values.shape == errors.shape == (3,)
    # Without return_stderr the exact estimators take another path (fused sums instead of row sums
    # with float32-rounded weights 1/n): the same value up to a fraction of the dtype tolerance.
    only = simgap.mmd2(x, y, bandwidth=SIGMAS, per_bandwidth=True, **opts)
    np.testing.assert_allclose(only, values, rtol=0.01 * rtol(dtype), atol=0.01 * rtol(dtype))
    for k, s in enumerate(SIGMAS):
        v, se = simgap.mmd2(x, y, bandwidth=s, return_stderr=True, **opts)
        assert values[k] == pytest.approx(v, rel=1e-9, abs=1e-12)
        assert errors[k] == pytest.approx(se, rel=1e-9, abs=1e-12)
        if estimator == "block":
            expected = block_reference(x, y, 9, 5, bandwidth=s)
        elif estimator == "linear":
            expected = linear_reference(x, y, 5, bandwidth=s)
        else:
            unbiased = estimator == "unbiased"
            expected = (ref.mmd2(x, y, bandwidth=s, estimator=estimator),
                        exact_stderr_reference(x, y, unbiased=unbiased, bandwidth=s),
                        1.0 / (1.0 / len(x) + 1.0 / len(y)))
        assert_estimate_close((float(values[k]), float(errors[k])), expected[:2], dtype, 1.0, expected[2])


def test_per_bandwidth_single_float_gives_one_value(rng):
    x, y = gap_pair(rng, 30, 20, 2, np.float64)
    got = simgap.mmd2(x, y, bandwidth=0.7, per_bandwidth=True)
    assert isinstance(got, np.ndarray) and got.shape == (1,)
    assert got[0] == pytest.approx(simgap.mmd2(x, y, bandwidth=0.7), rel=1e-12)


# --------------------------------------------------------------------------------------- rff
def _rff(x, y, **kw):
    return simgap.mmd2(x, y, estimator="rff", return_stderr=True, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_rff_close_to_exact_with_many_features(kernel, dtype, rng):
    x, y = gap_pair(rng, 301, 250, 5, dtype)
    bw = ref.median_bandwidth(x, y)
    exact, exact_se = simgap.mmd2(x, y, kernel=kernel, bandwidth=bw, return_stderr=True)
    value, se = _rff(x, y, kernel=kernel, bandwidth=bw, n_features=8192, seed=11)
    assert isinstance(value, float) and isinstance(se, float)
    assert abs(value - exact) <= 4.0 * se, (value, exact, se)
    # With 8192 features the spread over frequencies is small: the stderr is that of the exact estimate.
    assert 0.8 * exact_se < se < 1.3 * exact_se, (se, exact_se)
    # ... and the estimate is closer to the exact value than its sampling error.
    assert abs(value - exact) < exact_se


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_rff_is_unbiased_for_the_u_statistic(kernel):
    """The mean over frequency draws is the exact U-statistic, not the V-statistic."""
    g = np.random.default_rng(7)
    x, y = g.standard_normal((40, 3)), g.standard_normal((35, 3)) + 0.3
    kw = dict(kernel=kernel, bandwidth=1.5)
    unbiased = simgap.mmd2(x, y, **kw)
    biased = simgap.mmd2(x, y, estimator="biased", **kw)
    draws = np.array([simgap.mmd2(x, y, estimator="rff", n_features=2048, seed=s, **kw)
                      for s in range(24)])
    half_width = 4.0 * draws.std(ddof=1) / np.sqrt(draws.size)
    assert abs(draws.mean() - unbiased) <= half_width, (draws.mean(), unbiased, half_width)
    assert abs(biased - unbiased) > 2 * half_width  # precondition: the test tells U from V apart


@pytest.mark.parametrize("dtype", DTYPES)
def test_rff_seed_reproducible_and_seed_dependent(dtype, rng):
    x, y = gap_pair(rng, 77, 65, 9, dtype)
    a = _rff(x, y, bandwidth=2.0, n_features=256, seed=3)
    b = _rff(x, y, bandwidth=2.0, n_features=256, seed=3)
    c = _rff(x, y, bandwidth=2.0, n_features=256, seed=4)
    assert a == b
    assert a[0] != c[0]
    # Without return_stderr: the same value.
    assert simgap.mmd2(x, y, estimator="rff", bandwidth=2.0, n_features=256, seed=3) == a[0]


def test_rff_float32_agrees_with_float64(rng):
    x, y = gap_pair(rng, 120, 111, 6, np.float64)
    v64, se64 = _rff(x, y, bandwidth=2.0, n_features=1024, seed=1)
    v32, se32 = _rff(x.astype(np.float32), y.astype(np.float32), bandwidth=2.0, n_features=1024, seed=1)
    # Same frequencies, float32 projections: the estimates agree far inside their stderr.
    assert abs(v32 - v64) <= 1e-3 * se64 + 1e-4 * abs(v64)
    assert se32 == pytest.approx(se64, rel=1e-3)


def test_rff_spread_over_seeds_within_stderr(rng):
    """The rff stderr covers the frequency noise: repeated draws on fixed data spread less than it."""
    x, y = gap_pair(rng, 150, 140, 4, np.float64)
    pairs = [_rff(x, y, bandwidth=1.5, n_features=64, seed=s) for s in range(20)]
    values = np.array([v for v, _ in pairs])
    errors = np.array([se for _, se in pairs])
    exact, exact_se = simgap.mmd2(x, y, bandwidth=1.5, return_stderr=True)
    assert values.std(ddof=1) < 1.5 * errors.mean()
    # With only 64 features the frequency noise is part of the stderr: it exceeds the exact one.
    assert errors.mean() > exact_se
    assert abs(values.mean() - exact) <= 4.0 * values.std(ddof=1) / np.sqrt(values.size)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rff_weighted_matches_weighted_exact(dtype, rng):
    x, y = gap_pair(rng, 140, 120, 4, dtype)
    # Weights tilting x towards y (y is shifted in its first dims), so that they change MMD^2.
    a = np.exp(0.5 * x[:, 0].astype(np.float64)) * (rng.random(140) + 0.5)
    b = rng.random(120) + 0.05
    kw = dict(bandwidth=2.0, x_weights=a, y_weights=b)
    exact = ref.mmd2(x, y, estimator="unbiased", **kw)
    value, se = _rff(x, y, n_features=8192, seed=2, **kw)
    assert abs(value - exact) <= 4.0 * se, (value, exact, se)
    # The weights matter: the unweighted exact value is far from the weighted one.
    unweighted = ref.mmd2(x, y, bandwidth=2.0)
    assert abs(unweighted - exact) > 0.1 * abs(exact)
    exact_se = simgap.mmd2(x, y, estimator="unbiased", return_stderr=True, **kw)[1]
    assert 0.8 * exact_se < se < 1.3 * exact_se, (se, exact_se)
    draws = np.array([simgap.mmd2(x, y, estimator="rff", n_features=1024, seed=s, **kw)
                      for s in range(12)])
    assert abs(draws.mean() - exact) <= 4.0 * draws.std(ddof=1) / np.sqrt(draws.size) + 1e-4 * abs(exact)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rff_per_bandwidth(dtype, rng):
    x, y = gap_pair(rng, 160, 150, 5, dtype)
    values, errors = _rff(x, y, bandwidth=SIGMAS, per_bandwidth=True, n_features=4096, seed=8)
    assert values.shape == errors.shape == (3,)
    exact = simgap.mmd2(x, y, bandwidth=SIGMAS, per_bandwidth=True)
    assert np.all(errors > 0)
    assert np.all(np.abs(values - exact) <= 4.0 * errors), (values, exact, errors)
    # The summed kernel with the same seed is the sum of the per-bandwidth estimates.
    summed = simgap.mmd2(x, y, estimator="rff", bandwidth=SIGMAS, n_features=4096, seed=8)
    assert summed == pytest.approx(values.sum(), rel=1e-9, abs=1e-12)
    assert np.ptp(exact) > 5 * np.max(errors)  # precondition: per-bandwidth values are distinguishable


@pytest.mark.parametrize("kernel", ["imq", "polynomial", "linear", "energy"])
def test_rff_rejects_kernels_without_spectral_density(kernel, rng):
    x, y = gap_pair(rng, 20, 20, 3, np.float64)
    with pytest.raises(ValueError, match=rf"rff.*{kernel}"):
        simgap.mmd2(x, y, kernel=kernel, estimator="rff")


# -------------------------------------------------------------------------------- validation
@pytest.fixture
def xy(rng):
    return gap_pair(rng, 30, 25, 3, np.float64)


def test_block_size_larger_than_samples(xy):
    x, y = xy
    with pytest.raises(ValueError, match="block_size"):
        simgap.mmd2(x, y, estimator="block", block_size=26)
    simgap.mmd2(x, y, estimator="block", block_size=25)  # exactly the smaller sample: allowed


@pytest.mark.parametrize("block_size,error", [(1, ValueError), (0, ValueError), (-3, ValueError),
                                              (2.5, TypeError), (True, TypeError)])
def test_block_size_invalid(block_size, error, xy):
    x, y = xy
    with pytest.raises(error, match="block_size"):
        simgap.mmd2(x, y, estimator="block", block_size=block_size)


@pytest.mark.parametrize("estimator", ["block", "linear"])
@pytest.mark.parametrize("which", ["x_weights", "y_weights"])
def test_weights_rejected_by_block_and_linear(estimator, which, xy):
    x, y = xy
    w = {"x_weights": np.ones(30), "y_weights": np.ones(25)}[which]
    with pytest.raises(ValueError, match=estimator):
        simgap.mmd2(x, y, estimator=estimator, block_size=5, **{which: w})


@pytest.mark.parametrize("kernel", ["laplacian", "imq", "polynomial", "linear", "energy"])
def test_per_bandwidth_needs_gaussian(kernel, xy):
    x, y = xy
    with pytest.raises(ValueError, match="per_bandwidth"):
        simgap.mmd2(x, y, kernel=kernel, per_bandwidth=True)


@pytest.mark.parametrize("n_features,error", [(1, ValueError), (0, ValueError), (-8, ValueError),
                                              (2.5, TypeError), (None, TypeError)])
def test_rff_n_features_invalid(n_features, error, xy):
    x, y = xy
    with pytest.raises(error, match="n_features"):
        simgap.mmd2(x, y, estimator="rff", n_features=n_features)


@pytest.mark.parametrize("estimator", ["quadratic", "Linear-time", "", 3, ["block"]])
def test_unknown_estimator(estimator, xy):
    x, y = xy
    with pytest.raises(ValueError, match="estimator"):
        simgap.mmd2(x, y, estimator=estimator)


def test_linear_needs_two_rows(rng):
    x, y = gap_pair(rng, 1, 10, 3, np.float64)
    with pytest.raises(ValueError, match="linear"):
        simgap.mmd2(x, y, estimator="linear")


def test_exact_is_an_alias_of_unbiased(xy):
    x, y = xy
    for kw in ({}, {"return_stderr": True}, {"bandwidth": SIGMAS, "per_bandwidth": True}):
        a = simgap.mmd2(x, y, estimator="exact", **kw)
        b = simgap.mmd2(x, y, estimator="unbiased", **kw)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -------------------------------------------------------------------- statistical calibration
def _null_pairs(n_seeds=30, n=200, d=5):
    for s in range(n_seeds):
        g = np.random.default_rng(5000 + s)
        yield s, g.standard_normal((n, d)), g.standard_normal((n, d))


def test_block_stderr_calibrated_under_null():
    """Same distribution: the block estimate is rarely more than 3 of its stderrs from 0."""
    z = np.array([v / se for s, x, y in _null_pairs()
                  for v, se in [simgap.mmd2(x, y, estimator="block", block_size=20, seed=s,
                                            bandwidth=2.0, return_stderr=True)]])
    assert np.all(np.isfinite(z))
    assert np.mean(np.abs(z) > 3.0) <= 0.15, z
    assert 0.5 < np.std(z, ddof=1) < 1.6, z  # t with 9 dof: sd ~1.13


def test_linear_stderr_calibrated_under_null():
    z = np.array([v / se for s, x, y in _null_pairs()
                  for v, se in [simgap.mmd2(x, y, estimator="linear", seed=s, bandwidth=2.0,
                                            return_stderr=True)]])
    assert 0.6 < np.std(z, ddof=1) < 1.5, z
    assert abs(np.mean(z)) < 0.8, z  # centred on 0: the statistic is unbiased under H0


@pytest.mark.parametrize("estimator", ["linear", "rff"])
def test_row_chunks_do_not_change_the_result(estimator, rng, monkeypatch):
    """The linear and rff estimators gather rows in chunks: many small chunks give the same result."""
    x, y = gap_pair(rng, 301, 257, 5, np.float64)
    opts = dict(estimator=estimator, bandwidth=[1.0, 2.5], per_bandwidth=True, return_stderr=True,
                n_features=64, seed=4)
    whole = simgap.mmd2(x, y, **opts)
    monkeypatch.setattr(simgap._estimators, "ROW_CHUNK_ELEMENTS", 1000)  # ragged chunks
    chunked = simgap.mmd2(x, y, **opts)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    if estimator == "linear":
        for k, s in enumerate([1.0, 2.5]):
            value, se, npairs = linear_reference(x, y, 4, bandwidth=s)
            got = (float(chunked[0][k]), float(chunked[1][k]))
            assert_estimate_close(got, (value, se), np.float64, 1.0, npairs)


@pytest.mark.parametrize("estimator", ["rff", "unbiased"])
def test_weight_on_a_single_sample_is_rejected(estimator, rng):
    x, y = gap_pair(rng, 12, 10, 2, np.float64)
    w = np.zeros(12)
    w[3] = 1.0
    with pytest.raises(ValueError, match="two samples"):
        simgap.mmd2(x, y, estimator=estimator, x_weights=w, return_stderr=True)
