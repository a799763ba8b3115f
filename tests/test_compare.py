"""simgap.compare / GapReport: the numbers, the statistical honesty of the test
and interval, the planted-gap findings (clusters, parameters), and the plain-data
outputs (to_dict / to_json / summary)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

import simgap
from simgap.compare.gap import witness_and_bootstrap
from simgap.compare.inputs import seeds


def _shifted(rng, n=200, m=200, d=8, shift=0.6):
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((m, d))
    y[:, 0] += shift
    return x, y


FAST = dict(n_permutations=200, n_bootstrap=50, c2st_folds=3)


@pytest.fixture(scope="module")
def shifted_report():
    rng = np.random.default_rng(1)
    x, y = _shifted(rng)
    params = pd.DataFrame({"blur": rng.uniform(0, 2, 200), "light": rng.choice(["dusk", "noon"], 200)})
    labels = (rng.integers(0, 2, 200), rng.integers(0, 2, 200))
    ids = ([f"r{i}" for i in range(200)], [f"s{i}" for i in range(200)])
    return x, y, simgap.compare(x, y, params=params, labels=labels, ids=ids, seed=3, **FAST)


# ---------------------------------------------------------------------------
# Overall numbers agree with the public metric functions
# ---------------------------------------------------------------------------


def test_overall_numbers_match_public_functions(shifted_report):
    x, y, r = shifted_report
    bw = r.settings["bandwidth"]
    assert r.settings["kernel"] == "gaussian"
    assert bw == pytest.approx(simgap.median_bandwidth(x, y, seed=seeds(3, 12)[2]))
    assert r.mmd2 == pytest.approx(simgap.mmd2(x, y, bandwidth=bw), rel=1e-9, abs=1e-12)
    t = simgap.mmd_test(x, y, 200, bandwidth=bw, seed=seeds(3, 12)[3])
    assert r.p_value == t.p_value
    assert r.fd == pytest.approx(simgap.frechet_distance(x, y))
    assert r.swd == pytest.approx(simgap.sliced_wasserstein(x, y, seed=seeds(3, 12)[6]))
    assert r.prdc == pytest.approx(simgap.prdc(x, y, k=5))
    lo, hi = r.mmd2_ci
    assert lo < r.mmd2 < hi
    assert r.p_value < 0.01 and 0.6 < r.c2st_auc <= 1.0
    # per-sample coverage is the Naeem et al. definition: its mean is prdc's coverage
    assert r.real_coverage["covered"].mean() == pytest.approx(r.prdc["coverage"])
    assert list(r.synthetic_scores["id"][:2]) == ["s0", "s1"]
    np.testing.assert_allclose(r.synthetic_scores["realism"], simgap.realism_score(x, y, k=3))


def test_witness_is_the_kernel_contraction(shifted_report):
    x, y, r = shifted_report
    bw = r.settings["bandwidth"]
    w = simgap.kernel_contract(y, x, np.full(len(x), 1 / len(x)), bandwidth=bw) - simgap.kernel_contract(
        y, y, np.full(len(y), 1 / len(y)), bandwidth=bw)
    np.testing.assert_allclose(r.synthetic_scores["witness"], w, rtol=1e-9, atol=1e-12)


def test_bootstrap_replicate_is_weighted_unbiased_mmd2(rng):
    x, y = _shifted(rng, 60, 50, 3)
    sigma = 1.7
    _, reps = witness_and_bootstrap(x, y, sigma, 3, seed=11)
    g = np.random.default_rng(11)
    a = g.multinomial(60, np.full(60, 1 / 60)) / 60
    b = g.multinomial(50, np.full(50, 1 / 50)) / 50
    want = simgap.mmd2(x, y, bandwidth=sigma, x_weights=a, y_weights=b, estimator="unbiased")
    assert reps[0] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_bootstrap_interval_covers_the_population_value(rng):
    """95% percentile interval vs the closed-form population MMD^2 of a gaussian shift."""
    d, shift, sigma, n = 2, 0.6, 1.5, 150
    c = (sigma**2 / (sigma**2 + 2)) ** (d / 2)
    truth = 2 * c * (1 - math.exp(-shift**2 / (2 * (sigma**2 + 2))))
    hits, reps = 0, 40
    for r in range(reps):
        g = np.random.default_rng(1000 + r)
        x, y = _shifted(g, n, n, d, shift)
        _, boot = witness_and_bootstrap(x, y, sigma, 100, seed=r)
        lo, hi = np.quantile(boot, [0.025, 0.975])
        hits += lo <= truth <= hi
    assert hits / reps >= 0.8, hits


# ---------------------------------------------------------------------------
# Statistical honesty of the permutation test
# ---------------------------------------------------------------------------


def test_null_rejection_rate_is_nominal():
    """Both sets from one distribution: over 200 seeded repetitions, the rejection rate at
    alpha = 0.05 lies in the binomial 99% interval of 0.05 (compare() uses this exact test)."""
    reps, alpha = 200, 0.05
    rejections = 0
    for r in range(reps):
        g = np.random.default_rng(r)
        x, y = g.standard_normal((20, 3)), g.standard_normal((25, 3))
        p = simgap.mmd_test(x, y, 199, seed=r).p_value
        rejections += p <= alpha
    lo, hi = binom.interval(0.99, reps, alpha)
    assert lo <= rejections <= hi, (rejections, lo, hi)


def test_power_against_a_shift():
    reps, rejections = 50, 0
    for r in range(reps):
        g = np.random.default_rng(10_000 + r)
        x, y = _shifted(g, 40, 40, 3, 1.0)
        rejections += simgap.mmd_test(x, y, 199, seed=r).p_value <= 0.05
    assert rejections >= 45


def test_compare_null_is_not_significant():
    g = np.random.default_rng(5)
    x, y = g.standard_normal((150, 6)), g.standard_normal((150, 6))
    r = simgap.compare(x, y, **FAST)
    assert r.p_value > 0.01
    assert r.c2st_auc < 0.65
    assert (r.clusters["verdict"] == "balanced").all()


# ---------------------------------------------------------------------------
# Where: planted modes
# ---------------------------------------------------------------------------


def test_cluster_verdicts_find_missing_and_artefact_modes():
    g = np.random.default_rng(7)
    d = 16
    centres = 8.0 * np.eye(d)[:4]

    def mix(modes, n):
        which = g.choice(modes, size=n)
        return centres[which] + g.standard_normal((n, d)), which

    real, real_mode = mix([0, 1, 2], 240)   # mode 2: missing from synthetic
    syn, syn_mode = mix([0, 1, 3], 240)     # mode 3: synthetic only
    r = simgap.compare(real, syn, seed=0, **FAST)
    cl = r.clusters
    assert len(cl) == 4
    missing = cl[cl["verdict"] == "missing"]
    only = cl[cl["verdict"] == "synthetic-only"]
    assert len(missing) == 1 and len(only) == 1
    assert (cl["verdict"] == "balanced").sum() == 2
    c_missing = int(missing["cluster"].iloc[0])
    c_only = int(only["cluster"].iloc[0])
    assert set(real_mode[r.real_coverage["cluster"].to_numpy() == c_missing]) == {2}
    assert set(syn_mode[r.synthetic_scores["cluster"].to_numpy() == c_only]) == {3}
    # the artefacts are the least realistic samples and the missing mode the coverage holes
    worst = r.least_realistic(40)
    assert (syn_mode[worst.index.to_numpy()] == 3).all()
    holes = r.coverage_holes()
    assert (real_mode[holes["row"].to_numpy()] == 2).mean() > 0.95
    assert r.per_class is None and r.parameter_importance is None


# ---------------------------------------------------------------------------
# Which parameters: a planted cause
# ---------------------------------------------------------------------------


def test_parameter_ranking_finds_the_planted_parameter():
    g = np.random.default_rng(11)
    n, m, d = 400, 400, 8
    real = g.standard_normal((n, d))
    blur = g.uniform(0.0, 2.0, m)
    noise = g.uniform(0.0, 1.0, m)
    light = g.choice(["dusk", "noon", "night"], m)
    syn = g.standard_normal((m, d))
    syn[:, 0] += 3.0 * np.clip(np.abs(blur - 1.5) - 0.3, 0.0, None)  # real matches blur 1.2-1.8
    params = pd.DataFrame({"noise": noise, "blur": blur, "light": light})
    r = simgap.compare(real, syn, params=params, seed=1, **FAST)
    pi = r.parameter_importance
    assert pi["parameter"].iloc[0] == "blur"
    assert bool(pi["significant"].iloc[0])
    assert pi["importance"].iloc[0] > 5 * max(pi["importance"].iloc[1:].max(), 0.01)
    text = pi["direction"].iloc[0]
    assert text.startswith("blur: real data matches")
    lo, hi = (float(v) for v in text.split("matches ")[1].split(";")[0].split("–"))
    assert 0.9 <= lo <= 1.5 <= hi <= 2.0, text
    assert (pi["direction"].iloc[1:] == "").all()
    prof = r.parameter_profiles["blur"]
    assert prof["count"].sum() == m
    assert {"bin", "count", "mean_score", "ci_low", "ci_high", "realistic_rate"} <= set(prof.columns)
    assert set(r.parameter_profiles["light"]["bin"]) == {"dusk", "noon", "night"}
    assert r.parameter_r2 > 0.3


# ---------------------------------------------------------------------------
# Per class, directions, scale switch
# ---------------------------------------------------------------------------


def test_per_class_and_directions(shifted_report):
    x, y, r = shifted_report
    pc = r.per_class
    assert list(pc["label"]) == [0, 1]
    assert (pc["n_real"].sum(), pc["n_synthetic"].sum()) == (200, 200)
    assert {"mmd2", "p_value", "swd", "fd", "precision", "recall", "density", "coverage"} <= set(pc.columns)
    # the planted shift is along the first axis: the top direction is (close to) +e0
    v = r.direction_vectors[0]
    assert abs(v[0]) > 0.8
    assert r.directions["wasserstein"].is_monotonic_decreasing
    assert r.direction_vectors.shape == (len(r.directions), 8)


def test_class_missing_from_synthetic_is_reported(rng):
    x, y = _shifted(rng, 60, 60, 3, 0.0)
    lx = np.array([0] * 40 + [1] * 20)
    ly = np.zeros(60, dtype=int)
    r = simgap.compare(x, y, labels={"real": lx, "synthetic": ly}, **FAST)
    row = r.per_class.set_index("label").loc[1]
    assert row["n_synthetic"] == 0 and row["note"] == "missing from synthetic" and math.isnan(row["mmd2"])


def test_above_threshold_uses_documented_approximations(rng):
    x, y = _shifted(rng, 300, 260, 4, 0.8)
    r = simgap.compare(x, y, max_exact=100, c2st_max=120, **FAST)
    assert len(r.approximations) == 2
    assert "subsample" in r.approximations[0]
    assert r.mmd2_block is not None and r.mmd2_block["value"] > 0
    assert len(r.synthetic_scores) == 260 and len(r.real_coverage) == 100
    assert np.isfinite(r.synthetic_scores["witness"]).all()
    assert np.isfinite(r.synthetic_scores["p_real"]).all()
    assert r.p_value < 0.05


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def test_accepts_tensors_float32_and_is_reproducible(rng):
    torch = pytest.importorskip("torch")
    x, y = _shifted(rng, 80, 70, 5)
    a = simgap.compare(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32)), seed=4, **FAST)
    b = simgap.compare(x.astype(np.float32), y.astype(np.float32), seed=4, **FAST)
    assert a.to_dict() == b.to_dict()


def test_accepts_an_embedding_store_with_metadata(tmp_path, rng):
    if not hasattr(simgap, "save_embeddings"):
        pytest.skip("simgap.save_embeddings is not available in this build")
    x, y = _shifted(rng, 80, 70, 5)
    folder = tmp_path / "syn"
    simgap.save_embeddings(str(folder), y, metadata={"id": np.arange(100, 170), "blur": np.linspace(0, 1, 70)})
    r = simgap.compare(x, str(folder), **FAST)
    assert list(r.params.columns) == ["blur"]
    assert r.synthetic_scores["id"].iloc[0] == 100
    assert r.parameter_importance["parameter"].tolist() == ["blur"]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(synthetic=np.zeros((30, 3))), ValueError, "real has 4 columns but synthetic has 3"),
        (dict(params={"blur": np.zeros(10)}), ValueError, "params has 10 rows but synthetic has 30"),
        (dict(params=[1, 2]), TypeError, "params must be"),
        (dict(labels=np.zeros(30)), TypeError, "labels must be a pair"),
        (dict(labels=(np.zeros(30), None)), ValueError, "labels: give class labels for both"),
        (dict(ids=(np.arange(29), np.arange(30))), ValueError, "ids for real has 29 entries"),
        (dict(n_clusters=0), ValueError, "n_clusters"),
        (dict(ci_level=1.5), ValueError, "ci_level"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(k=40), ValueError, "k=40"),
        (dict(map_method="tsne"), ValueError, "map_method"),
    ],
)
def test_errors_name_the_argument(kwargs, exc, match):
    g = np.random.default_rng(0)
    args = dict(real=g.standard_normal((30, 4)), synthetic=g.standard_normal((30, 4)))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        simgap.compare(args.pop("real"), args.pop("synthetic"), **args, **FAST)


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


def test_to_dict_is_json_serialisable_and_complete(shifted_report):
    _, _, r = shifted_report
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["schema_version"] == simgap.SCHEMA_VERSION
    for key in ("mmd2", "mmd2_ci", "p_value", "swd", "fd", "prdc", "c2st_auc", "clusters", "synthetic_scores",
                "real_coverage", "parameter_importance", "parameter_profiles", "per_class", "directions",
                "approximations", "settings"):
        assert key in back, key
    assert back["mmd2"] == pytest.approx(r.mmd2)
    assert len(back["synthetic_scores"]) == 200 and back["synthetic_scores"][0]["id"] == "s0"
    assert back["parameter_importance"][0]["parameter"] in ("blur", "light")


def test_to_json_writes_atomically(tmp_path, shifted_report):
    _, _, r = shifted_report
    path = tmp_path / "gap.json"
    path.write_text("old")
    text = r.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    assert sorted(os.listdir(tmp_path)) == ["gap.json"]  # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="path"):
        r.to_json(tmp_path / "no" / "such" / "dir.json")
    with pytest.raises(TypeError, match="path"):
        r.to_json(12)


def test_summary_prints_a_table(shifted_report, capsys):
    _, _, r = shifted_report
    r.summary()
    out = capsys.readouterr().out
    assert "MMD²" in out and "C2ST AUC" in out and "verdict" in out and "blur" in out
    text = r.summary_text()
    assert "p-value" in text and "coverage" in text
    assert "GapReport(" in repr(r)


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

_QUICK = dict(n_permutations=30, n_bootstrap=10, map_method="pca", n_clusters=2)


def _two_sets(n=120, m=110, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.2


def test_cpu_bfloat16_tensors_are_widened():
    torch = pytest.importorskip("torch")
    x, y = _two_sets()
    xb, yb = torch.from_numpy(x).bfloat16(), torch.from_numpy(y).bfloat16()
    got = simgap.compare(xb, yb, **_QUICK)
    want = simgap.compare(xb.float(), yb.float(), **_QUICK)
    assert got.mmd2 == want.mmd2 and got.fd == want.fd


@pytest.mark.parametrize("kind", ["nan", "pd_na", "none"])
def test_missing_labels_form_one_class(kind):
    """NaN != NaN made one empty class per NaN (and lost their samples); pd.NA raised."""
    import pandas as pd

    x, y = _two_sets()
    rng = np.random.default_rng(1)
    if kind == "nan":
        lx, ly = rng.integers(0, 2, len(x)).astype(float), rng.integers(0, 2, len(y)).astype(float)
        lx[:5], ly[:4] = np.nan, np.nan
    elif kind == "pd_na":
        lx = pd.Series(rng.choice(["a", "b"], len(x)), dtype="string")
        ly = pd.Series(rng.choice(["a", "b"], len(y)), dtype="string")
        lx[:5], ly[:4] = pd.NA, pd.NA
    else:
        lx = np.array([None if i < 5 else "ab"[i % 2] for i in range(len(x))], dtype=object)
        ly = np.array([None if i < 4 else "ab"[i % 2] for i in range(len(y))], dtype=object)
    pc = simgap.compare(x, y, labels=(lx, ly), **_QUICK).per_class
    assert len(pc) == 3
    assert pc["n_real"].sum() == len(x) and pc["n_synthetic"].sum() == len(y)
    missing = pc[pc["label"].isna()]
    assert len(missing) == 1 and int(missing["n_real"].iloc[0]) == 5 and int(missing["n_synthetic"].iloc[0]) == 4


def test_parameters_with_inf_or_huge_values():
    """They reached the random forest raw (ValueError from scikit-learn)."""
    import pandas as pd

    x, y = _two_sets()
    rng = np.random.default_rng(2)
    params = pd.DataFrame({"light": np.where(np.arange(len(y)) % 7 == 0, np.inf, rng.random(len(y))),
                           "huge": rng.random(len(y)) * 1e300})
    rep = simgap.compare(x, y, params=params, **_QUICK)
    assert set(rep.parameter_importance["parameter"]) == {"light", "huge"}
    assert np.isfinite(rep.parameter_importance["importance"]).all()


def test_three_real_rows_are_enough_for_k_2():
    x, y = _two_sets()
    with pytest.warns(UserWarning, match="c2st_folds=5"):  # 3 real rows: 3 folds
        rep = simgap.compare(x[:3], y[:50], k=2, **_QUICK)
    assert np.isfinite(rep.mmd2) and len(rep.synthetic_scores) == 50
    assert rep.settings["c2st_folds"] == 3


def test_block_estimator_description_matches_what_it_used():
    x, y = _two_sets(2500, 60, 4)
    rep = simgap.compare(x, y, max_exact=1000, **_QUICK)
    bs = rep.mmd2_block["block_size"]
    assert bs == 30 and np.isfinite(rep.mmd2_block["stderr"])  # two blocks: a standard error
    assert any(f"block_size={bs}, 2 blocks: 60 random rows of each set" in a for a in rep.approximations)


def test_per_class_statistics_respect_max_exact():
    x, y = _two_sets(900, 800, 4)
    labels = (np.zeros(900, int), np.zeros(800, int))
    rep = simgap.compare(x, y, labels=labels, max_exact=300, **_QUICK)
    row = rep.per_class.iloc[0]
    assert row["n_real"] == 900 and row["n_synthetic"] == 800
    assert any("per_class" in a and "max_exact=300" in a for a in rep.approximations)
    # the single class's MMD^2 is that of a 300-row subsample: the headline one, on the same kind of subsample
    assert abs(row["mmd2"] - rep.mmd2) < 0.05


def test_negative_seed_is_named():
    x, y = _two_sets()
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        simgap.compare(x, y, seed=-1)


def test_c2st_folds_beyond_the_rows_are_recorded_and_warned(caplog):
    """c2st_folds=1000 with 40 synthetic rows used 40 folds while the report said 1000."""
    import logging
    import warnings

    x, y = _two_sets(60, 40, 4)
    with caplog.at_level(logging.WARNING, logger="simgap"), pytest.warns(UserWarning, match="c2st_folds=1000") as w:
        rep = simgap.compare(x, y, n_permutations=50, n_bootstrap=20, c2st_folds=1000)
    assert w[0].filename == __file__  # points at the caller's line
    assert rep.settings["c2st_folds"] == 40
    assert any("40 folds" in note and "c2st_folds=1000" in note for note in rep.notes)
    assert any(r.name == "simgap" and "c2st_folds=1000" in r.getMessage() for r in caplog.records)
    assert rep.to_dict()["settings"]["c2st_folds"] == 40
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the folds fit
        rep = simgap.compare(x, y, n_permutations=50, n_bootstrap=20, c2st_folds=5)
    assert rep.settings["c2st_folds"] == 5 and not any("folds" in note for note in rep.notes)
