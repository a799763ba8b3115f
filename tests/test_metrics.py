"""Nearest neighbours, PRDC, realism score and Frechet distance against plain
float64 references (scipy's cdist, the prdc package's formulas, pytorch-fid's
formula with scipy.linalg.sqrtm)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist

import simgap
from conftest import DTYPES, rtol

SIZES = [(7, 9, 1), (50, 33, 3), (401, 250, 17), (1000, 1200, 64)]


def ref_prdc(real, fake, k):
    r, f = real.astype(np.float64), fake.astype(np.float64)
    drr, dff, drf = cdist(r, r), cdist(f, f), cdist(r, f)
    radius_r = np.sort(drr, axis=1)[:, k]  # k-th neighbour, self (0) excluded
    radius_f = np.sort(dff, axis=1)[:, k]
    inside = drf < radius_r[:, None]
    return {
        "precision": inside.any(axis=0).mean(),
        "recall": (drf < radius_f[None, :]).any(axis=1).mean(),
        "density": inside.sum(axis=0).mean() / k,
        "coverage": (drf.min(axis=1) < radius_r).mean(),
    }


def ref_fd(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    m1, m2 = x.mean(0), y.mean(0)
    s1, s2 = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("k", [1, 5])
def test_nearest_neighbors(rng, dtype, n, m, d, k):
    if k >= n or k > m:
        pytest.skip("k too large for this size")
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) * 1.3 + 0.2).astype(dtype)
    dist, idx = simgap.nearest_neighbors(x, y, k=k)
    D = cdist(x.astype(np.float64), y.astype(np.float64))
    # The returned distances are the exact float64 distances of the input values
    # (candidates re-ranked exactly), in either dtype.
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :k], rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.take_along_axis(D, idx, axis=1), dist, rtol=1e-13, atol=0)
    # self search excludes each row
    dist_s, idx_s = simgap.nearest_neighbors(x, k=k)
    Dx = cdist(x.astype(np.float64), x.astype(np.float64))
    np.fill_diagonal(Dx, np.inf)
    np.testing.assert_allclose(dist_s, np.sort(Dx, axis=1)[:, :k], rtol=1e-13, atol=0)
    assert not (idx_s == np.arange(n)[:, None]).any()


def test_nearest_neighbors_duplicates_and_ties():
    x = np.array([[0.0], [0.0], [1.0], [2.0]])
    dist, idx = simgap.nearest_neighbors(x, k=2)
    np.testing.assert_array_equal(dist, [[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 2.0]])
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2], [0, 1], [2, 0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", SIZES[1:])
def test_prdc_matches_reference(rng, dtype, n, m, d):
    real = rng.normal(size=(n, d)).astype(dtype)
    fake = (rng.normal(size=(m, d)) * 1.2 + 0.3).astype(dtype)
    got = simgap.prdc(real, fake, k=5)
    ref = ref_prdc(real, fake, 5)
    for key in ref:
        # pairs near a ball's boundary are decided on exact distances: no flips, float32 included
        assert got[key] == pytest.approx(ref[key], abs=1e-12), (key, got, ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d,k", [(6, 1, 1), (200, 5, 5), (1000, 64, 5), (500, 3, 3), (300, 2, 10), (257, 513, 5)])
def test_prdc_of_a_set_with_itself_is_exactly_one(rng, dtype, n, d, k):
    # Each sample's k-th neighbour lies exactly on its ball's boundary, hence
    # outside (strict "<"), so every ball holds exactly k samples: density 1.
    # (The prdc package gives 1.0 here; a Gram-identity test without an exact
    # boundary decision gives about 1.05.)
    x = (rng.normal(size=(n, d)) * 3 + 7).astype(dtype)
    assert simgap.prdc(x, x, k=k) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}


@pytest.mark.parametrize("dtype", DTYPES)
def test_prdc_with_copied_real_samples_matches_reference(rng, dtype):
    # A quarter of the fake set are copies of real samples: many of them lie
    # exactly on some real ball's boundary.
    real = rng.normal(size=(400, 6)).astype(dtype)
    source = rng.choice(400, 100, replace=False)
    fake = np.vstack([(rng.normal(size=(300, 6)) * 1.2 + 0.2), real[source]]).astype(dtype)
    got = simgap.prdc(real, fake, k=5)
    ref = ref_prdc(real, fake, 5)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), (key, got, ref)
    # realism: a copy of a real sample whose ball is kept (radius <= median) is infinitely real
    r64 = real.astype(np.float64)
    radii = np.sort(cdist(r64, r64), axis=1)[:, 3]
    kept = radii <= np.median(radii)
    score = simgap.realism_score(real, fake, k=3)
    np.testing.assert_array_equal(np.isinf(score[300:]), kept[source])
    assert np.isfinite(score[:300]).all()


def test_prdc_detects_missing_mode(rng):
    real = np.vstack([rng.normal(size=(400, 4)), rng.normal(size=(400, 4)) + 12.0])
    fake = rng.normal(size=(800, 4))  # only the first mode
    m = simgap.prdc(real, fake)
    assert m["precision"] > 0.9 and m["coverage"] < 0.6 and m["recall"] < 0.6


@pytest.mark.parametrize("dtype", DTYPES)
def test_realism_score_matches_reference(rng, dtype):
    real = rng.normal(size=(300, 5)).astype(dtype)
    fake = (rng.normal(size=(120, 5)) * 1.5).astype(dtype)
    got = simgap.realism_score(real, fake, k=3)
    r64, f64 = real.astype(np.float64), fake.astype(np.float64)
    radii = np.sort(cdist(r64, r64), axis=1)[:, 3]
    keep = radii <= np.median(radii)
    ref = (radii[keep][None, :] / cdist(f64, r64[keep])).max(axis=1)
    np.testing.assert_allclose(got, ref, rtol=10 * rtol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", [(2, 3, 1), (50, 70, 3), (2000, 1500, 64)])
def test_frechet_distance_matches_pytorch_fid_formula(rng, dtype, n, m, d):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) @ rng.normal(size=(d, d)) * 0.5 + 0.2).astype(dtype)
    got = simgap.frechet_distance(x, y)
    np.testing.assert_allclose(got, ref_fd(x, y), rtol=max(rtol(dtype), 1e-6), atol=1e-8)


def test_frechet_distance_identical_is_zero_and_shift(rng):
    x = rng.normal(size=(3000, 6))
    assert abs(simgap.frechet_distance(x, x)) < 1e-8
    assert simgap.frechet_distance(x, x + 2.0) == pytest.approx(6 * 4.0, rel=1e-9)


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: simgap.prdc(a, b, k=0),
        lambda a, b: simgap.prdc(a[:5], b, k=5),
        lambda a, b: simgap.nearest_neighbors(a, b[:2], k=3),
        lambda a, b: simgap.nearest_neighbors(a[:3], k=3),
        lambda a, b: simgap.frechet_distance(a[:1], b),
        lambda a, b: simgap.prdc(a, b[:, :2]),
        lambda a, b: simgap.realism_score(a, np.full_like(b, np.nan)),
    ],
)
def test_metrics_bad_input(call):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(20, 3))
    with pytest.raises((ValueError, TypeError)):
        call(a, b)


def test_realism_of_copies_is_infinite_even_when_real_radii_are_zero():
    """A real set made of duplicates has k-NN radii 0 (and a median radius 0):
    copies of its samples are realistic (inf, as documented), not 0 (0/0)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 4))
    real = np.repeat(base, 5, axis=0)
    for dtype in (np.float32, np.float64):
        scores = simgap.realism_score(real.astype(dtype), base[:10].astype(dtype))
        assert np.isinf(scores).all()
        assert (simgap.realism_score(real.astype(dtype), base[:3].astype(dtype) + 0.01) == 0).all()
