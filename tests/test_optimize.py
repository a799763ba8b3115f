"""Closed loop: SimOptimizer's ask / tell, strategies, fixed bandwidth, storage and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

import simgap

pytest.importorskip("optuna")

SPACE = {"shift": (-2.0, 2.0), "n": simgap.Int(1, 3), "kind": ["a", "b"]}


def _real(seed=0):
    return np.random.default_rng(seed).normal(0.7, 1.0, size=(200, 2))


def _render(config, seed=0, m=100):
    rng = np.random.default_rng(seed)
    scale = 1.0 if config.get("kind", "a") == "a" else 2.0
    return rng.normal(config["shift"], scale, size=(m, 2))


def test_ask_returns_configs_in_the_space():
    opt = simgap.SimOptimizer(SPACE, _real(), batch_size=5, seed=1)
    configs = opt.ask()
    assert len(configs) == 5 and len(opt.ask(2)) == 2 and len(opt.pending) == 7
    for c in configs:
        assert set(c) == {"shift", "n", "kind"}
        assert -2 <= c["shift"] <= 2 and isinstance(c["n"], int) and 1 <= c["n"] <= 3 and c["kind"] in ("a", "b")
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 5


@pytest.mark.parametrize("strategy", ["tpe", "cmaes", "random"])
def test_strategies_close_the_gap(strategy, capsys):
    opt = simgap.SimOptimizer(SPACE, _real(), strategy=strategy, batch_size=6, seed=0)
    calls = iter(range(10**6))
    opt.optimize(lambda c: _render(c, seed=next(calls)), n_rounds=6)
    assert opt.n_evaluated == 36
    assert abs(opt.best_config["shift"] - 0.7) < 0.6 and opt.best_config["kind"] == "a"
    conv = opt.convergence()
    np.testing.assert_array_equal(conv["calls"], np.arange(1, 37))
    np.testing.assert_allclose(conv["best"], np.minimum.accumulate(conv["value"]))
    assert conv["best"][-1] == opt.best_value == opt.best_mmd2
    assert capsys.readouterr().err == ""  # optuna's INFO logging is silenced


GP_SPACE = {"shift": (-2.0, 2.0), "kind": ["a", "b"]}  # GP asks cost ~0.1-0.5 s each; keep these tests small


@pytest.mark.parametrize("seed", [0, 1])
def test_gp_strategy_models_the_objective(seed):
    """strategy="gp": once 10 uniform start-up trials are complete, the GP's proposals
    concentrate near the optimum (shift 0.7, kind "a"), much closer than the
    start-up ones (in shift; it keeps trying both kinds while a batch is
    pending); a batch's configurations differ (pending ones are fantasies)."""
    pytest.importorskip("scipy")
    opt = simgap.SimOptimizer(GP_SPACE, _real(), strategy="gp", batch_size=4, seed=seed)
    calls = iter(range(10**6))
    opt.optimize(lambda c: _render(c, seed=next(calls)), n_rounds=4)
    assert opt.n_evaluated == 16 and repr(opt).startswith("SimOptimizer(strategy='gp'")
    h = opt.history.sort_values("trial")
    start, model = h[h["trial"] < 12], h[h["trial"] >= 12]  # 10 complete trials before the GP starts
    far = lambda t: float(np.median(np.abs(t["shift"] - 0.7)))  # noqa: E731
    assert far(model) < 0.5 * far(start), (far(model), far(start))
    assert abs(opt.best_config["shift"] - 0.7) < 0.3 and opt.best_config["kind"] == "a"
    assert len({json.dumps(c, sort_keys=True) for c in model[["shift", "kind"]].to_dict("records")}) == 4


def test_gp_strategy_is_reproducible_and_needs_gpsampler(monkeypatch):
    pytest.importorskip("scipy")
    import optuna

    runs = []
    for _ in range(2):
        opt = simgap.SimOptimizer(GP_SPACE, _real(), strategy="GP", batch_size=2, seed=5)
        calls = iter(range(10**6))
        opt.optimize(lambda c: _render(c, seed=next(calls)), n_rounds=6)  # the 6th round from the GP
        runs.append(opt.history[["shift", "kind", "value"]].to_numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    monkeypatch.delattr(optuna.samplers, "GPSampler")
    with pytest.raises(ImportError, match=r"strategy='gp' needs optuna >= 3.6"):
        simgap.SimOptimizer(GP_SPACE, _real(), strategy="gp")


def test_values_use_one_fixed_bandwidth_and_mmd2_batch():
    real = _real()
    opt = simgap.SimOptimizer(SPACE, real, batch_size=3, seed=0)
    assert opt.bandwidth == pytest.approx(simgap.median_bandwidth(real))
    configs = opt.ask()
    sets = [_render(c, seed=i) for i, c in enumerate(configs)]
    values = opt.tell(configs, sets)
    ref = simgap.mmd2_batch(real, sets, bandwidth=opt.bandwidth, estimator="unbiased")
    np.testing.assert_allclose(values, ref, rtol=1e-12)
    h = opt.history
    assert list(h.columns[:7]) == ["trial", "round", "order", "state", "value", "mmd2", "n_samples"]
    np.testing.assert_allclose(h["mmd2"], ref, rtol=1e-12)
    assert (h["state"] == "complete").all() and (h["n_samples"] == 100).all()


def test_embed_objective_failures_and_unasked_configs():
    embed_calls = []

    def embed(raw):
        embed_calls.append(len(raw))
        return np.asarray(raw)[:, :2] * 2.0

    raw_real = np.hstack([_real(), np.zeros((200, 3))])
    opt = simgap.SimOptimizer({"shift": (-2.0, 2.0)}, raw_real, embed=embed, batch_size=3, seed=0,
                              objective=lambda cfg, z, gap: gap + 0.01 * abs(cfg["shift"]))
    assert embed_calls == [200]
    configs = opt.ask()
    sets = [np.hstack([_render(c, i), np.ones((100, 3))]) for i, c in enumerate(configs)]
    sets[1] = None  # a failed render
    values = opt.tell(configs, sets)
    assert np.isnan(values[1]) and np.isfinite(values[[0, 2]]).all()
    h = opt.history
    assert list(h["state"]) == ["complete", "fail", "complete"]
    np.testing.assert_allclose(h["value"][[0, 2]], h["mmd2"][[0, 2]] + 0.01 * np.abs(h["shift"][[0, 2]]))
    # a configuration never asked is recorded as a new trial (a warm start)
    opt.tell([{"shift": 0.7}], [np.hstack([_render({"shift": 0.7}, 9), np.ones((100, 3))])])
    assert opt.best_config == {"shift": 0.7} and opt.history["round"].iloc[-1] == -1
    # plain copies (e.g. through JSON) match the asked trial
    c = opt.ask(1)
    opt.tell(json.loads(json.dumps(c)), [np.hstack([_render(c[0], 3), np.ones((100, 3))])])
    assert opt.pending == [] and len(opt.history) == 5


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_resume_after_interruption_continues_the_same_study(tmp_path, strategy):
    real = _real()
    path = tmp_path / "study.db"
    sim = lambda c: _render(c, seed=int(abs(c["shift"]) * 1e6))  # noqa: E731 - deterministic renders

    def crash(c):
        raise KeyboardInterrupt

    # uninterrupted reference: 4 rounds
    with simgap.SimOptimizer(SPACE, real, strategy=strategy, batch_size=4, seed=3) as ref:
        ref.optimize(sim, n_rounds=4)
        ref_hist = ref.history

    # interrupted during round 3 (asked, never told), then resumed from the database
    with simgap.SimOptimizer(SPACE, real, strategy=strategy, batch_size=4, seed=3, storage=path) as a:
        a.optimize(sim, n_rounds=2)
        with pytest.raises(KeyboardInterrupt):
            a.optimize(crash, n_rounds=1)
        asked = a.pending
    assert len(asked) == 4
    with simgap.SimOptimizer(SPACE, real, strategy=strategy, batch_size=4, seed=3, storage=str(path)) as b:
        assert b.n_evaluated == 8 and b.pending == asked
        assert b.ask() == asked  # the pending configurations are handed out again first
        b.tell(asked, [sim(c) for c in asked])
        b.optimize(sim, n_rounds=1)
        hist = b.history
    assert len(hist) == 16 and (hist["state"] == "complete").all()
    cols = ["shift", "n", "kind", "value"]
    np.testing.assert_array_equal(hist[cols].to_numpy(), ref_hist[cols].to_numpy())


def test_resume_with_pending_fail_and_consistency_checks(tmp_path):
    real = _real()
    url = f"sqlite:///{tmp_path / 's.db'}"
    with simgap.SimOptimizer(SPACE, real, batch_size=2, seed=0, storage=url) as a:
        a.ask()
    with simgap.SimOptimizer(SPACE, real, batch_size=2, seed=0, storage=url, pending="fail") as b:
        assert b.pending == [] and list(b.history["state"]) == ["fail", "fail"]
    with pytest.raises(ValueError, match="real differs from the real set"):
        simgap.SimOptimizer(SPACE, real + 1, storage=url)
    with pytest.raises(ValueError, match="space differs"):
        simgap.SimOptimizer({**SPACE, "shift": (-3.0, 2.0)}, real, storage=url)
    with simgap.SimOptimizer(SPACE, real + 1, storage=url, study_name="other") as c:
        assert c.n_evaluated == 0


def test_bad_inputs_name_the_argument(tmp_path):
    real = _real()
    with pytest.raises(ValueError, match="strategy must be one of"):
        simgap.SimOptimizer(SPACE, real, strategy="bayes")
    with pytest.raises(ValueError, match=r"strategy must be one of \('tpe', 'gp'"):
        simgap.SimOptimizer(SPACE, real, strategy="gaussian-process")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        simgap.SimOptimizer(SPACE, real, batch_size=0)
    with pytest.raises(ValueError, match="storage: the folder"):
        simgap.SimOptimizer(SPACE, real, storage=tmp_path / "missing" / "s.db")
    with pytest.raises(TypeError, match="embed must be a callable"):
        simgap.SimOptimizer(SPACE, real, embed="resnet")
    with pytest.raises(TypeError, match=r"space\['c'\]: choices must be str"):
        simgap.SimOptimizer({"c": [object()]}, real)
    with pytest.raises(ValueError, match="real contains NaN"):
        simgap.SimOptimizer(SPACE, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="pending must be one of"):
        simgap.SimOptimizer(SPACE, real, pending="drop")
    opt = simgap.SimOptimizer(SPACE, real, batch_size=2)
    with pytest.raises(RuntimeError, match="no configuration has been evaluated"):
        opt.best_config
    configs = opt.ask()
    with pytest.raises(ValueError, match="configs has 2 entries but synthetic_sets has 1"):
        opt.tell(configs, [_render(configs[0])])
    with pytest.raises(ValueError, match=r"configs\[0\]\['shift'\] = 5.0 is outside"):
        opt.tell([{**configs[0], "shift": 5.0}], [_render(configs[0])])
    with pytest.raises(ValueError, match=r"configs\[0\]\['kind'\] = 'z' is not among"):
        opt.tell([{**configs[0], "kind": "z"}], [_render(configs[0])])
    with pytest.raises(ValueError, match=r"configs\[0\] must have exactly the parameters"):
        opt.tell([{"shift": 0.0}], [_render(configs[0])])
    with pytest.raises(ValueError, match=r"real has 2 columns but synthetic_sets\[0\] has 3"):
        opt.tell(configs[:1], [np.zeros((10, 3))])
    with pytest.raises(ValueError, match="objective returned"):
        bad = simgap.SimOptimizer(SPACE, real, objective=lambda c, z, g: float("nan"))
        bad.tell(bad.ask(1), [_render(configs[0])])
    with pytest.raises(ValueError, match="n_rounds must be >= 1"):
        opt.optimize(_render, n_rounds=0)


# ---- found by a robustness review (2026-12-01) ---------------------------------------------------

def test_an_embed_error_is_the_users_own_exception():
    """It was re-raised as type(exc)(message), which fails for exceptions whose
    constructor takes other arguments (a TypeError replaced the user's error)."""
    import subprocess

    real = np.random.default_rng(0).normal(size=(50, 2))

    def embed(x):
        raise subprocess.CalledProcessError(3, ["render"])

    opt = simgap.SimOptimizer({"a": (0.0, 1.0)}, real, embed=lambda x: x)
    opt.embed = embed
    with pytest.raises(subprocess.CalledProcessError) as info:
        opt.tell(opt.ask(1), [real])
    assert info.value.returncode == 3
    import sys

    if sys.version_info >= (3, 11):  # exceptions take notes
        assert any("embed failed on synthetic_sets[0]" in n for n in info.value.__notes__)


def test_none_choices_stay_none_in_the_history_and_can_be_told_back():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(60, 2))
    opt = simgap.SimOptimizer({"a": (0.0, 1.0), "t": [None, "wood"]}, real, seed=0, strategy="random")
    configs = opt.ask(6)
    opt.tell(configs, [real + c["a"] for c in configs])
    hist = opt.history
    assert set(hist["t"]) <= {None, "wood"}
    assert [c["t"] for c in configs] == hist["t"].tolist()[:6]
    again = simgap.SimOptimizer({"a": (0.0, 1.0), "t": [None, "wood"]}, real, seed=1, strategy="random")
    again.tell([{"a": float(r.a), "t": r.t} for r in hist.itertuples()], [real] * len(hist))  # a warm start


def test_telling_a_configuration_twice_warns():
    real = np.random.default_rng(2).normal(size=(60, 2))
    opt = simgap.SimOptimizer({"a": (0.0, 1.0)}, real, seed=0)
    c = opt.ask(2)
    opt.tell(c, [real, real + 1])
    with pytest.warns(UserWarning, match="already told"):
        opt.tell(c[:1], [real])
    assert opt.n_evaluated == 3


def test_resuming_a_study_with_another_seed_is_refused(tmp_path):
    real = np.random.default_rng(3).normal(size=(40, 2))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    simgap.SimOptimizer({"a": (0.0, 1.0)}, real, seed=0, storage=storage, study_name="s")
    simgap.SimOptimizer({"a": (0.0, 1.0)}, real, seed=0, storage=storage, study_name="s")  # the same: fine
    with pytest.raises(ValueError, match="seed 1 differs from the stored study's 0"):
        simgap.SimOptimizer({"a": (0.0, 1.0)}, real, seed=1, storage=storage, study_name="s")


# ---- found by adversarial testing (issue 18) -----------------------------------------------------

@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_a_trial_killed_inside_ask_is_completed_never_handed_out_empty(tmp_path, strategy):
    """Item 4: a kill inside ask() leaves a RUNNING trial with no parameters (reproduced with
    optuna's own ask); a resumed study handed it out as {} (which tell() then refused), on
    every resume.  It is now completed (with the sampler an uninterrupted ask would have
    used, so the configurations are those of a study never interrupted), handed out once,
    and told like any other."""
    import optuna

    real = _real()
    db = tmp_path / "r.db"
    simgap.SimOptimizer(SPACE, real, strategy=strategy, seed=3, storage=db).close()
    optuna.load_study(study_name="simgap", storage=f"sqlite:///{db}").ask()  # the killed ask
    with simgap.SimOptimizer(SPACE, real, strategy=strategy, seed=3, storage=db) as opt:
        assert opt.pending == []  # a trial without its parameters was never handed out
        configs = opt.ask(2)
        assert [set(c) for c in configs] == [set(SPACE)] * 2
        opt.tell(configs, [_render(c) for c in configs])
        assert list(opt.history["state"]) == ["complete", "complete"]
    ref = simgap.SimOptimizer(SPACE, real, strategy=strategy, seed=3)
    assert ref.ask(2) == configs
    with simgap.SimOptimizer(SPACE, real, strategy=strategy, seed=3, storage=db) as again:
        assert again.pending == [] and again.n_evaluated == 2
        assert not any(c in configs for c in again.ask(2))


def test_a_trial_killed_halfway_through_its_parameters(tmp_path):
    """Item 4, parameters partly suggested: the missing ones are suggested (the stored one
    kept) with pending="reask"; with pending="fail" the trial is failed."""
    import optuna

    real = _real()
    for pending in ("reask", "fail"):
        db = tmp_path / f"{pending}.db"
        simgap.SimOptimizer(SPACE, real, seed=0, storage=db).close()
        half = optuna.load_study(study_name="simgap", storage=f"sqlite:///{db}").ask(
            {"shift": optuna.distributions.FloatDistribution(-2.0, 2.0)})
        with simgap.SimOptimizer(SPACE, real, seed=0, storage=db, pending=pending) as opt:
            assert opt.pending == []
            configs = opt.ask(2)
            assert [set(c) for c in configs] == [set(SPACE)] * 2
            shifts = [c["shift"] for c in configs]
            assert (half.params["shift"] in shifts) == (pending == "reask")
            opt.tell(configs, [_render(c) for c in configs])
            states = list(opt.history["state"])
        assert states == (["complete"] * 2 if pending == "reask" else ["fail", "complete", "complete"])


def test_pending_configurations_are_handed_out_once_per_resume(tmp_path):
    """The configurations a session asked and never told are handed out again, first, by the
    next session that asks (once: not by its later asks); tell() also takes them untold."""
    real = _real()
    db = tmp_path / "s.db"
    with simgap.SimOptimizer(SPACE, real, batch_size=3, seed=0, storage=db) as a:
        asked = a.ask()
    with simgap.SimOptimizer(SPACE, real, batch_size=3, seed=0, storage=db) as b:
        assert b.ask(2) == asked[:2]
        later = b.ask(2)
        assert later[0] == asked[2] and later[1] not in asked
        assert not any(c in asked for c in b.ask(3))
    with simgap.SimOptimizer(SPACE, real, batch_size=3, seed=0, storage=db) as c:
        c.tell(asked, [_render(x) for x in asked])  # told without being asked again
        assert c.n_evaluated == 3 and len(c.history) == 7 and len(c.pending) == 4  # b's new ones


@pytest.mark.parametrize("url", ["nosuch://x", "not a url://", "sqlite:///{tmp}/missing/s.db"])
def test_a_bad_storage_url_names_storage(tmp_path, url):
    """Item 10: sqlalchemy's NoSuchModuleError / ArgumentError / OperationalError surfaced
    without mentioning the argument."""
    with pytest.raises(ValueError, match=r"^storage[: ].*(not a database URL|does not exist)") as info:
        simgap.SimOptimizer(SPACE, _real(), storage=url.format(tmp=tmp_path))
    if "://x" in url:
        assert "sqlite:///study.db" in str(info.value)  # says what is accepted
    with pytest.raises(ValueError, match="storage must be None, a file path"):
        simgap.SimOptimizer(SPACE, _real(), storage="")
