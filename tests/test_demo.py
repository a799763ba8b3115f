"""``simgap demo --quick`` end to end, and the pieces of the demo loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from simgap import cli, demo, digits

REPORTS = ["report.html", "report.json", "report-before.html", "report-before.json", "configs.csv",
           "summary.json"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "simgap-demo"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "simgap", "demo", "--quick", "--out", str(out),
                           "--seed", "0"],
                          capture_output=True, text=True, timeout=600)
    return proc, out, time.perf_counter() - t0


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop(quick_run):
    proc, out, wall = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout
    for step in range(1, 7):
        assert f"[{step}/6]" in log
    for word in ("compare", "recommend", "SimOptimizer", "before", "after", "C2ST AUC",
                 "CNN accuracy on real digits", "same space"):
        assert word in log, word
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(out)) == sorted(REPORTS)  # and no temporary files left behind


@pytest.mark.slow
def test_quick_demo_closes_the_gap(quick_run):
    proc, out, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    before, after = summary["before"], summary["after"]
    assert after["mmd2"] < 0.5 * before["mmd2"]
    assert after["mmd2_final_space"] < before["mmd2_final_space"]
    assert after["c2st_auc"] < before["c2st_auc"]
    assert after["accuracy_real"] > before["accuracy_real"] + 0.15
    assert summary["seed"] == 0 and summary["quick"] is True
    assert set(summary["final_config"]) == set(digits.PARAMETERS)


@pytest.mark.slow
def test_quick_demo_writes_reports(quick_run):
    proc, out, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("report.json", "report-before.json"):
        report = json.loads((out / name).read_text())
        assert report["schema_version"].startswith("simgap.gap_report/")
        assert report["n_real"] == 1797 and report["dim"] == 64
    assert (out / "report.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    configs = pd.read_csv(out / "configs.csv")
    assert len(configs) == demo.QUICK.n_train
    assert set(configs.columns) == set(digits.PARAMETERS) | {"label"}
    for name, (low, high) in digits.PARAMETERS.items():
        assert configs[name].between(low, high).all(), name


def test_demo_output_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = cli.main(["demo", "--quick", "--out", str(tmp_path / "file")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_ERROR
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def one_thread():
    """One torch thread (tiny models are slower with more when the machine is busy)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def test_training_is_seeded(one_thread):
    import torch

    x, y, _ = digits.make_digits(300, seed=0)
    a = demo.train_classifier(x, y, epochs=1, seed=4, progress=False)
    b = demo.train_classifier(x, y, epochs=1, seed=4, progress=False)
    c = demo.train_classifier(x, y, epochs=1, seed=5, progress=False)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.state_dict()["head.weight"], c.state_dict()["head.weight"])


def test_penultimate_layer_is_the_embedding():
    import simgap

    net = demo.digit_net().eval()
    x, _, _ = digits.make_digits(20, seed=0)
    emb = simgap.Embedder(net, layer=demo.EMBED_LAYER)(x[:, None] / 16.0, progress=False)
    assert emb.shape == (20, 64) and (emb >= 0).all()


def test_format_table():
    keys = [k for k, *_ in demo._TABLE_ROWS]
    before = dict.fromkeys(keys, 1.0) | {"accuracy_real": 0.25}
    after = dict.fromkeys(keys, 0.5) | {"accuracy_real": 0.75}
    text = demo.format_table(before, after)
    assert "before" in text and "after" in text
    assert "25.0%" in text and "75.0%" in text
    assert len(text.splitlines()) == len(keys) + 2


def test_quick_and_full_settings_are_consistent():
    for s in (demo.QUICK, demo.FULL):
        assert s.n_train % 10 == 0 and s.opt_samples % 10 == 0
    assert demo.QUICK.n_train < demo.FULL.n_train
    assert demo.QUICK.opt_rounds <= demo.FULL.opt_rounds
    assert np.all([getattr(demo.QUICK, f) <= getattr(demo.FULL, f) for f in demo.QUICK.__dataclass_fields__])
