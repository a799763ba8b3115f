"""The procedural digit simulator of ``simgap demo`` (simgap.digits)."""

from __future__ import annotations

import numpy as np
import pytest

from simgap import digits

# A configuration close to scikit-learn's digits (thick, large, upright, clean, full contrast).
REALISTIC = {
    "stroke_width": (3.5, 5.5), "slant": (-0.1, 0.2), "scale": (0.95, 1.1), "aspect": (1.1, 1.5),
    "shift": (0.0, 0.8), "wobble": (0.05, 0.2), "blur": (0.0, 0.5), "noise": (0.0, 0.3),
    "contrast": (0.95, 1.1),
}
CLEAN = {"stroke_width": 3.0, "slant": 0.0, "scale": 1.0, "aspect": 1.2, "shift": 0.0, "wobble": 0.0,
         "blur": 0.0, "noise": 0.0, "contrast": 1.0}


@pytest.mark.parametrize("n", [0, 1, 7, 130, 1025])
def test_shapes_dtype_and_value_range(n):
    images, labels, params = digits.make_digits(n, seed=3)
    assert images.shape == (n, 8, 8) and images.dtype == np.float32
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert set(params) == set(digits.PARAMETERS)
    assert all(v.shape == (n,) for v in params.values())
    if n:
        assert images.min() >= 0 and images.max() <= 16
        np.testing.assert_array_equal(images, np.round(images))  # quantised like the real data
        assert set(np.unique(labels)) <= set(range(10))


def test_classes_are_balanced():
    _, labels, _ = digits.make_digits(1003, seed=0)
    counts = np.bincount(labels, minlength=10)
    assert counts.min() == 100 and counts.max() == 101


def test_real_digits_have_the_same_format():
    real, labels = digits.load_real_digits()
    assert real.shape == (1797, 8, 8) and real.dtype == np.float32
    assert labels.shape == (1797,) and set(np.unique(labels)) == set(range(10))
    assert real.min() == 0 and real.max() == 16
    np.testing.assert_array_equal(real, np.round(real))


def test_deterministic_per_seed():
    a = digits.make_digits(200, seed=11)
    b = digits.make_digits(200, seed=11)
    c = digits.make_digits(200, seed=12)
    for x, y in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(x, y)
    for k in a[2]:
        np.testing.assert_array_equal(a[2][k], b[2][k])
    assert not np.array_equal(a[0], c[0])
    labels = np.arange(50) % 10
    np.testing.assert_array_equal(digits.render_digits(labels, CLEAN | {"noise": 1.0}, seed=5),
                                  digits.render_digits(labels, CLEAN | {"noise": 1.0}, seed=5))


@pytest.mark.parametrize("name", list(digits.PARAMETERS))
def test_every_parameter_changes_the_output(name):
    labels = np.arange(100) % 10
    low, high = digits.PARAMETERS[name]
    base = dict(CLEAN, shift=1.0, wobble=0.1, noise=0.5)  # so that shift / wobble / noise act
    a = digits.render_digits(labels, base | {name: low + 0.25 * (high - low)}, seed=0)
    b = digits.render_digits(labels, base | {name: low + 0.75 * (high - low)}, seed=0)
    assert np.abs(a - b).mean() > 0.1


def test_parameters_act_in_the_expected_direction():
    labels = np.arange(200) % 10
    ink = lambda **kw: digits.render_digits(labels, CLEAN | kw, seed=0).sum()  # noqa: E731
    assert ink(stroke_width=5.0) > 1.3 * ink(stroke_width=2.0)
    assert ink(contrast=1.0) > 1.5 * ink(contrast=0.5)
    assert ink(scale=1.1) > ink(scale=0.5)
    # blur spreads the ink: fewer saturated bins
    sharp = digits.render_digits(labels, CLEAN | {"stroke_width": 4.0}, seed=0)
    soft = digits.render_digits(labels, CLEAN | {"stroke_width": 4.0, "blur": 2.5}, seed=0)
    assert (soft == 16).sum() < (sharp == 16).sum()
    # noiseless, unshifted, undeformed renders do not depend on the seed
    np.testing.assert_array_equal(digits.render_digits(labels, CLEAN, seed=0),
                                  digits.render_digits(labels, CLEAN, seed=1))


def test_slant_leans_the_strokes():
    # A "1" is one vertical stroke: with positive slant the top leans right.
    img = digits.render_digits(np.array([1]), CLEAN | {"slant": 0.6, "stroke_width": 2.0},
                               hires=True)[0]
    cols = np.arange(img.shape[1])
    top = (img[4:10] * cols).sum() / img[4:10].sum()
    bottom = (img[22:28] * cols).sum() / img[22:28].sum()
    assert top > bottom + 3


def test_rendering_is_class_conditional():
    # Nearest class mean of one set of clean renders classifies another set of renders.
    train_x, train_y, _ = digits.make_digits(500, REALISTIC | {"noise": (0.0, 0.0)}, seed=0)
    test_x, test_y, _ = digits.make_digits(300, REALISTIC | {"noise": (0.0, 0.0)}, seed=1)
    means = np.stack([train_x[train_y == c].reshape(-1, 64).mean(0) for c in range(10)])
    d = ((test_x.reshape(-1, 1, 64) - means[None]) ** 2).sum(-1)
    assert (d.argmin(1) == test_y).mean() > 0.8
    clean = digits.render_digits(np.arange(10), CLEAN).reshape(10, 64)
    dist = ((clean[:, None] - clean[None]) ** 2).sum(-1)
    assert dist[~np.eye(10, dtype=bool)].min() > 0  # every class looks different


def test_hires_canvas():
    img = digits.render_digits(np.arange(10), CLEAN, hires=True)
    assert img.shape == (10, 32, 32)
    assert img.min() >= 0 and img.max() <= 1 + 1e-6
    assert (img.sum(axis=(1, 2)) > 20).all()  # every class leaves ink on the canvas


def test_realistic_configuration_is_closer_to_real_than_the_default():
    import simgap

    real, _ = digits.load_real_digits()
    default, _, _ = digits.make_digits(800, seed=0)
    good, _, _ = digits.make_digits(800, REALISTIC, seed=0)
    r = real.reshape(-1, 64).astype(np.float64)
    sigma = simgap.median_bandwidth(r)
    gap_default = simgap.mmd2(r, default.reshape(-1, 64).astype(np.float64), bandwidth=sigma)
    gap_good = simgap.mmd2(r, good.reshape(-1, 64).astype(np.float64), bandwidth=sigma)
    assert gap_good < 0.5 * gap_default


def test_sample_params_stay_inside_the_configuration():
    p = digits.sample_params(500, {"blur": (0.2, 0.4)}, seed=0)
    assert p["blur"].min() >= 0.2 and p["blur"].max() <= 0.4
    lo, hi = digits.DEFAULT_CONFIG["slant"]
    assert p["slant"].min() >= lo and p["slant"].max() <= hi
    np.testing.assert_array_equal(p["blur"], digits.sample_params(500, {"blur": (0.2, 0.4)}, seed=0)["blur"])


def test_params_as_data_frame_and_list_of_rows():
    pd = pytest.importorskip("pandas")
    labels = np.arange(4)
    rows = [dict(CLEAN, stroke_width=w) for w in (2.0, 3.0, 4.0, 5.0)]
    a = digits.render_digits(labels, rows, seed=0)
    b = digits.render_digits(labels, pd.DataFrame(rows), seed=0)
    c = digits.render_digits(labels, {k: np.array([r[k] for r in rows]) for k in CLEAN}, seed=0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(
    "labels, params, match",
    [
        (np.array([10]), None, "0..9"),
        (np.array([-1]), None, "0..9"),
        (np.array([0.5]), None, "0..9"),
        (np.zeros((2, 2), dtype=int), None, "one-dimensional"),
        (np.arange(3), {"thickness": 2.0}, "unknown digit parameters"),
        (np.arange(3), {"blur": 9.0}, "must lie in"),
        (np.arange(3), {"blur": [0.0, 1.0]}, "shape"),
        (np.arange(3), {"blur": np.nan}, "non-finite"),
        (np.arange(3), [CLEAN], "rows"),
        (np.arange(3), 3.0, "mapping"),
    ],
)
def test_invalid_input_is_rejected(labels, params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        digits.render_digits(labels, params)


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError, match="low <= high"):
        digits.sample_params(5, {"blur": (2.0, 1.0)})
    with pytest.raises(ValueError, match="low <= high"):
        digits.sample_params(5, {"blur": (0.0, 9.0)})
    with pytest.raises(ValueError, match="unknown"):
        digits.sample_params(5, {"colour": (0.0, 1.0)})
    with pytest.raises(ValueError, match="non-negative"):
        digits.make_digits(-1)
