"""The ``simgap`` command line on generated files: every command, every input format, and each
bad-file case -> its exit code and a one-line message, no traceback unless --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import simgap
from simgap import cli

N_REAL, N_SYN, DIM = 120, 100, 6


def run(*args):
    """The command line in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "simgap", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def call(capsys, *args):
    """main() in this process (faster): (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors and --help
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(err: str):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("simgap ")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(N_REAL, DIM))
    params = {"blur": rng.uniform(0.0, 2.0, N_SYN), "size": rng.uniform(1.0, 3.0, N_SYN)}
    syn = rng.normal(size=(N_SYN, DIM)) + params["blur"][:, None]
    return real, syn, params


@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    real, syn, params = data
    d = tmp_path_factory.mktemp("cli")
    np.save(d / "real.npy", real)
    np.save(d / "syn.npy", syn)
    import pandas as pd

    pd.DataFrame(params).to_csv(d / "params.csv", index=False)
    return d


# --------------------------------------------------------------------------- help and info


def test_help_lists_commands_and_exit_codes(capsys):
    code, out, _ = call(capsys, "--help")
    assert code == 0
    for command in ("demo", "compare", "recommend", "distance", "embed", "info"):
        assert command in out
    assert "exit codes" in out
    for code_ in cli.EXIT_CODES:
        assert f"  {code_} " in out


@pytest.mark.parametrize("command", ["demo", "compare", "recommend", "distance", "embed", "info"])
def test_every_command_has_help(capsys, command):
    code, out, _ = call(capsys, command, "--help")
    assert code == 0
    assert f"simgap {command}" in out and "exit codes" in out


def test_info_keeps_its_keys(capsys):
    code, out, _ = call(capsys, "info")
    assert code == 0
    info = json.loads(out)
    assert info["version"] == simgap.__version__
    for key in ("backends", "cpu_isa", "openmp", "threads", "cuda_module"):
        assert key in info
    assert set(info["backends"]) >= {"cpu", "cuda"}


def test_version_and_no_command(capsys):
    assert call(capsys, "--version")[:2] == (0, simgap.__version__ + "\n")
    code, out, _ = call(capsys)
    assert code == 0 and "usage" in out


@pytest.mark.parametrize("args", [
    ["no-such-command"],
    ["distance", "a.npy", "b.npy"],                      # --metric missing
    ["distance", "a.npy", "b.npy", "--metric", "kl"],    # not a metric
    ["recommend", "a.npy", "b.npy"],                     # --params missing
    ["recommend", "a.npy", "b.npy", "--params", "p.csv", "--n", "0"],
    ["embed", "--data", "x.npy", "--out", "s"],          # --model missing
])
def test_usage_errors_exit_2(capsys, args):
    code, _, err = call(capsys, *args)
    assert code == cli.EXIT_USAGE
    assert "Traceback" not in err


# --------------------------------------------------------------------------- distance


@pytest.mark.parametrize("metric", ["mmd", "swd", "fd"])
def test_distance_prints_one_number(capsys, files, data, metric):
    real, syn, _ = data
    code, out, err = call(capsys, "distance", files / "real.npy", files / "syn.npy", "--metric", metric)
    assert code == 0, err
    value = float(out.strip())
    expected = {"mmd": lambda: simgap.mmd2(real, syn),
                "swd": lambda: simgap.sliced_wasserstein(real, syn, n_projections=256, seed=0),
                "fd": lambda: simgap.frechet_distance(real, syn)}[metric]()
    assert value == pytest.approx(float(expected), rel=1e-8)


def test_distance_prdc(capsys, files, data):
    real, syn, _ = data
    code, out, _ = call(capsys, "distance", files / "real.npy", files / "syn.npy", "--metric", "prdc")
    assert code == 0
    parsed = dict(kv.split("=") for kv in out.split())
    assert set(parsed) == {"precision", "recall", "density", "coverage"}
    expected = simgap.prdc(real, syn, k=5)
    assert float(parsed["coverage"]) == pytest.approx(float(expected["coverage"]))
    code, out, _ = call(capsys, "distance", files / "real.npy", files / "syn.npy", "--metric", "prdc",
                        "--stat", "recall")
    assert code == 0 and float(out) == pytest.approx(float(expected["recall"]))


def _write_formats(d, name, arr):
    """The same array in every supported format; returns the paths."""
    import pandas as pd
    import torch

    paths = {}
    np.savez(d / f"{name}.npz", embeddings=arr, other=np.zeros(3))
    paths["npz"] = d / f"{name}.npz"
    torch.save(torch.from_numpy(arr), d / f"{name}.pt")
    paths["pt"] = d / f"{name}.pt"
    torch.save({"embeddings": torch.from_numpy(arr), "note": "x"}, d / f"{name}_dict.pt")
    paths["pt-dict"] = d / f"{name}_dict.pt"
    df = pd.DataFrame(arr, columns=[f"f{i}" for i in range(arr.shape[1])])
    df.insert(0, "name", [f"s{i}" for i in range(len(df))])  # a text column is ignored
    df.to_csv(d / f"{name}.csv", index=False)
    paths["csv"] = d / f"{name}.csv"
    np.savetxt(d / f"{name}_noheader.csv", arr, delimiter=",", fmt="%.17g")
    paths["csv-noheader"] = d / f"{name}_noheader.csv"
    try:
        df.to_parquet(d / f"{name}.parquet")
        paths["parquet"] = d / f"{name}.parquet"
    except ImportError:
        pass
    simgap.save_embeddings(d / f"{name}_store", arr)
    paths["store"] = d / f"{name}_store"
    return paths


def test_every_input_format_gives_the_same_distance(capsys, tmp_path, data):
    real, syn, _ = data
    syn_paths = _write_formats(tmp_path, "syn", syn)
    np.save(tmp_path / "real.npy", real)
    values = {}
    for fmt, path in syn_paths.items():
        code, out, err = call(capsys, "distance", tmp_path / "real.npy", path, "--metric", "fd")
        assert code == 0, (fmt, err)
        values[fmt] = float(out)
    expected = float(simgap.frechet_distance(real, syn))
    for fmt, v in values.items():
        # the store keeps float32
        assert v == pytest.approx(expected, rel=1e-4 if fmt == "store" else 1e-8), fmt


# --------------------------------------------------------------------------- bad files


def _bad_files(d):
    np.save(d / "ok.npy", np.ones((10, 4)))
    np.save(d / "vector.npy", np.ones(10))
    np.save(d / "cube.npy", np.ones((4, 3, 2)))
    np.save(d / "one_row.npy", np.ones((1, 4)))
    np.save(d / "dim3.npy", np.ones((10, 3)))
    nan = np.ones((10, 4))
    nan[7, 2] = np.nan
    np.save(d / "nan.npy", nan)
    inf = np.ones((10, 4))
    inf[3, 0] = np.inf
    np.save(d / "inf.npy", inf)
    np.save(d / "text.npy", np.array(["a", "b"]))
    (d / "garbage.npy").write_bytes(b"this is not numpy")
    (d / "data.txt").write_text("1,2\n3,4\n")
    np.savez(d / "two.npz", a=np.ones((10, 4)), b=np.ones((10, 4)))
    (d / "words.csv").write_text("name,kind\nx,y\nz,w\n")
    (d / "empty_store").mkdir()
    return d


BAD_CASES = [
    ("missing.npy", "no such file"),
    ("vector.npy", "2-D"),
    ("cube.npy", "2-D"),
    ("one_row.npy", "at least 2 rows"),
    ("dim3.npy", "columns"),
    ("nan.npy", "NaN in 1 row(s) (first: row 7)"),
    ("inf.npy", "Inf in 1 row(s) (first: row 3)"),
    ("text.npy", "dtype"),
    ("garbage.npy", "not a readable .npy"),
    ("data.txt", "unsupported format"),
    ("two.npz", "several arrays"),
    ("words.csv", "no numeric columns"),
    ("empty_store", "store"),
]


@pytest.mark.parametrize("name, message", BAD_CASES)
def test_bad_synthetic_file_exits_3_with_one_line(capsys, tmp_path, name, message):
    d = _bad_files(tmp_path)
    code, out, err = call(capsys, "distance", d / "ok.npy", d / name, "--metric", "mmd")
    assert code == cli.EXIT_INPUT
    assert_one_line_error(err)
    assert message in err
    assert "SYNTHETIC" in err


@pytest.mark.parametrize("command", [
    ["compare"], ["recommend", "--params", "params.csv"], ["distance", "--metric", "swd"]])
def test_every_analysis_command_checks_its_files(capsys, tmp_path, command):
    d = _bad_files(tmp_path)
    (d / "params.csv").write_text("blur\n" + "\n".join(["0.5"] * 10) + "\n")
    cmd, *opts = command
    opts = [str(d / o) if o.endswith(".csv") else o for o in opts]
    code, _, err = call(capsys, cmd, d / "nan.npy", d / "ok.npy", *opts)
    assert code == cli.EXIT_INPUT
    assert_one_line_error(err)
    assert "REAL" in err and "NaN" in err


def test_bad_file_in_a_fresh_process_and_debug_traceback(tmp_path):
    d = _bad_files(tmp_path)
    plain = run("distance", d / "ok.npy", d / "dim3.npy", "--metric", "mmd")
    assert plain.returncode == cli.EXIT_INPUT
    assert_one_line_error(plain.stderr)
    assert "REAL has 4 columns but SYNTHETIC has 3" in plain.stderr
    debug = run("distance", d / "ok.npy", d / "dim3.npy", "--metric", "mmd", "--debug")
    assert debug.returncode == cli.EXIT_INPUT
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()
    before = run("--debug", "distance", d / "ok.npy", d / "missing.npy", "--metric", "mmd")
    assert before.returncode == cli.EXIT_INPUT and "Traceback" in before.stderr


def test_other_errors_exit_4_with_one_line(capsys, tmp_path):
    d = _bad_files(tmp_path)
    # an output folder that does not exist
    code, _, err = call(capsys, "compare", d / "ok.npy", d / "ok.npy", "--json", d / "nope" / "r.json")
    assert code == cli.EXIT_ERROR
    assert_one_line_error(err)
    assert "does not exist" in err
    # a failure inside the analysis (an unknown kernel)
    code, _, err = call(capsys, "distance", d / "ok.npy", d / "ok.npy", "--metric", "mmd",
                        "--kernel", "nope")
    assert code == cli.EXIT_ERROR
    assert_one_line_error(err)


def test_bad_params_and_labels_files(capsys, files):
    d = files
    (d / "short_params.csv").write_text("blur\n0.1\n0.2\n")
    code, _, err = call(capsys, "compare", d / "real.npy", d / "syn.npy", "--params", d / "short_params.csv")
    assert code == cli.EXIT_INPUT
    assert_one_line_error(err)
    assert f"has 2 rows but SYNTHETIC has {N_SYN}" in err
    code, _, err = call(capsys, "recommend", d / "real.npy", d / "syn.npy", "--params", d / "nothing.csv")
    assert code == cli.EXIT_INPUT and "no such file" in err
    np.save(d / "few_labels.npy", np.zeros(5, dtype=int))
    code, _, err = call(capsys, "compare", d / "real.npy", d / "syn.npy", "--labels", d / "few_labels.npy")
    assert code == cli.EXIT_INPUT
    assert_one_line_error(err)
    assert f"expected {N_REAL + N_SYN} labels" in err


# --------------------------------------------------------------------------- compare / recommend


def test_compare_writes_reports(capsys, files, data):
    d = files
    labels = np.concatenate([np.arange(N_REAL) % 3, np.arange(N_SYN) % 3])
    np.save(d / "labels.npy", labels)
    code, out, err = call(capsys, "compare", d / "real.npy", d / "syn.npy", "--params", d / "params.csv",
                          "--labels", d / "labels.npy", "--json", d / "r.json", "--html", d / "r.html",
                          "--permutations", 200)
    assert code == 0, err
    assert "MMD²" in out and "C2ST AUC" in out and "blur" in out
    report = json.loads((d / "r.json").read_text())
    assert report["n_real"] == N_REAL and report["n_synthetic"] == N_SYN
    assert report["per_class"] is not None
    ranking = [row["parameter"] for row in report["parameter_importance"]]
    assert ranking[0] == "blur"  # the gap was generated by blur
    assert (d / "r.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert not [f for f in os.listdir(d) if f.startswith(".simgap-")]  # no temporary files left


def test_recommend_writes_configurations(capsys, files):
    d = files
    code, out, err = call(capsys, "recommend", d / "real.npy", d / "syn.npy", "--params", d / "params.csv",
                          "--n", 25, "--out", d / "configs.csv")
    assert code == 0, err
    assert "blur" in out and "gap (MMD^2)" in out
    import pandas as pd

    configs = pd.read_csv(d / "configs.csv")
    assert configs.shape == (25, 2) and list(configs.columns) == ["blur", "size"]
    # blur shifts the synthetic set away from the real one: the recommendation lowers it
    assert configs["blur"].median() < 0.6  # explored uniformly on [0, 2]
    code, out, _ = call(capsys, "recommend", d / "real.npy", d / "syn.npy", "--params", d / "params.csv",
                        "--n", 3)
    assert code == 0 and out.strip().splitlines()[-4] == "blur,size"


# --------------------------------------------------------------------------- embed


MODEL_SOURCE = """
import torch

def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())

def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(7, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(7, 2)

    def forward(self, x):
        return self.fc(x)

tiny = TinyNet()

NOT_A_MODEL = 3

def returns_int():
    return 3

class CallableThing:
    def __call__(self):
        return mlp()

callable_thing = CallableThing()
"""


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    (tmp_path / "cli_test_models.py").write_text(MODEL_SOURCE)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("cli_test_models", None)


def _write_images(folder, sizes):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / (f"img{i:02d}.png" if i % 2 == 0 else f"img{i:02d}.jpg"))


def test_embed_image_folder(capsys, model_dir):
    pytest.importorskip("PIL")
    _write_images(model_dir / "imgs", [(12, 10)] * 7)
    code, out, err = call(capsys, "embed", "--model", "cli_test_models:small_cnn", "--layer", "1",
                          "--data", model_dir / "imgs", "--out", model_dir / "store", "--batch-size", 3)
    assert code == 0, err
    x, meta = simgap.load_embeddings(model_dir / "store")
    assert x.shape == (7, 4)  # avg-pooled channels of the ReLU
    assert list(meta["file"]) == [f"img{i:02d}.{'png' if i % 2 == 0 else 'jpg'}" for i in range(7)]
    assert "7 embeddings of dimension 4" in out
    # the store is an input of the analysis commands
    code, out, _ = call(capsys, "distance", model_dir / "store", model_dir / "store", "--metric", "fd")
    assert code == 0 and abs(float(out)) < 1e-3


def test_embed_npy_and_mixed_image_sizes(capsys, model_dir):
    pytest.importorskip("PIL")
    np.save(model_dir / "x.npy", np.random.default_rng(0).normal(size=(20, 7)).astype(np.float32))
    code, _, err = call(capsys, "embed", "--model", "cli_test_models:mlp", "--layer", "1",
                        "--data", model_dir / "x.npy", "--out", model_dir / "s1")
    assert code == 0, err
    assert simgap.load_embeddings(model_dir / "s1")[0].shape == (20, 8)
    # an existing store is not overwritten without --overwrite
    code, _, err = call(capsys, "embed", "--model", "cli_test_models:mlp", "--data", model_dir / "x.npy",
                        "--out", model_dir / "s1")
    assert code == cli.EXIT_ERROR
    assert_one_line_error(err)
    _write_images(model_dir / "mixed", [(12, 10), (9, 9)])
    code, _, err = call(capsys, "embed", "--model", "cli_test_models:small_cnn", "--data", model_dir / "mixed",
                        "--out", model_dir / "s2")
    assert code == cli.EXIT_INPUT
    assert_one_line_error(err)
    assert "--resize" in err
    code, _, err = call(capsys, "embed", "--model", "cli_test_models:small_cnn", "--data", model_dir / "mixed",
                        "--out", model_dir / "s2", "--resize", 8, "--layer", "1")
    assert code == 0, err


@pytest.mark.parametrize("model, message", [
    ("cli_test_models", "PKG.MODULE:FACTORY"),
    (":small_cnn", "both parts"),
    ("cli_test_models:", "both parts"),
    ("no_such_module_xyz:f", "cannot import"),
    ("cli_test_models:nope", "no attribute"),
    ("cli_test_models:NOT_A_MODEL", "not a model"),         # an int: was a TypeError, exit 4
    ("cli_test_models:callable_thing", "not a model"),      # callable, but no class, function or module
    ("cli_test_models:returns_int", "not a model"),
])
def test_embed_bad_model(capsys, model_dir, model, message):
    np.save(model_dir / "x.npy", np.zeros((4, 7), dtype=np.float32))
    code, _, err = call(capsys, "embed", "--model", model, "--data", model_dir / "x.npy", "--out",
                        model_dir / "s")
    assert code == cli.EXIT_INPUT
    assert_one_line_error(err)
    assert message in err


@pytest.mark.parametrize("model", ["cli_test_models:TinyNet", "cli_test_models:tiny"])
def test_embed_accepts_a_module_class_or_instance(capsys, model_dir, model):
    np.save(model_dir / "x.npy", np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32))
    code, out, err = call(capsys, "embed", "--model", model, "--data", model_dir / "x.npy", "--out",
                          model_dir / "s")
    assert code == 0, err
    assert simgap.load_embeddings(model_dir / "s")[0].shape == (6, 2)


def test_embed_not_a_model_in_a_fresh_process(tmp_path):
    (tmp_path / "mymod.py").write_text("notcallable = 3\n")
    np.save(tmp_path / "x.npy", np.zeros((4, 7), dtype=np.float32))
    proc = subprocess.run([sys.executable, "-m", "simgap", "embed", "--model", "mymod:notcallable", "--data",
                           "x.npy", "--out", "s"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == cli.EXIT_INPUT, proc.stderr
    assert_one_line_error(proc.stderr)
    assert "not a model" in proc.stderr and "TypeError" not in proc.stderr


def test_model_modules_cannot_shadow_installed_packages(tmp_path):
    """--model runs code from the current folder, but that folder comes last on the import path: a local
    file named like an installed package does not replace it (here for the model module's own imports)."""
    site = tmp_path / "site"
    (site / "realpkg").mkdir(parents=True)
    (site / "realpkg" / "__init__.py").write_text("VALUE = 'installed'\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "realpkg.py").write_text("raise ImportError('the local realpkg.py shadowed the installed package')\n")
    (work / "shadow_models.py").write_text(
        "import torch\nimport realpkg\n\n"
        "def make():\n"
        "    assert realpkg.VALUE == 'installed', realpkg\n"
        "    return torch.nn.Linear(7, 2)\n")
    np.save(work / "x.npy", np.zeros((4, 7), dtype=np.float32))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "simgap", "embed", "--model", "shadow_models:make", "--data",
                           "x.npy", "--out", "s"], capture_output=True, text=True, timeout=300, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 4 embeddings" in proc.stdout


def test_model_option_says_it_runs_code(capsys):
    code, out, _ = call(capsys, "embed", "--help")
    assert code == 0
    assert "runs Python code from that module" in " ".join(out.split())


def test_embed_bad_data(capsys, model_dir):
    (model_dir / "empty").mkdir()
    (model_dir / "notes.txt").write_text("hello")
    for data, message in ((model_dir / "empty", "no .png"), (model_dir / "notes.txt", "expected a folder"),
                          (model_dir / "nothing", "no such file")):
        code, _, err = call(capsys, "embed", "--model", "cli_test_models:mlp", "--data", data, "--out",
                            model_dir / "s")
        assert code == cli.EXIT_INPUT, err
        assert_one_line_error(err)
        assert message in err


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def failing(tmp):
        with open(tmp, "w") as fh:
            fh.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cli.atomic_write(str(target), failing)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]
    def writer(tmp):
        with open(tmp, "w") as fh:
            fh.write("new")

    cli.atomic_write(str(target), writer)
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.json"]


def test_a_closed_output_pipe_exits_quietly_with_141():
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "simgap", "info"], stdout=write, stderr=subprocess.PIPE,
                              timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == cli.EXIT_PIPE == 141
    assert proc.stderr.decode().strip() == ""


@pytest.mark.parametrize("unbuffered", [True, False])
@pytest.mark.parametrize("command", ["info", "distance", "compare"])
def test_every_command_exits_141_into_a_closed_pipe(files, command, unbuffered):
    """`simgap compare a.npy b.npy | true` exited 1 (rich's broken-pipe handler); buffered output
    (no PYTHONUNBUFFERED) failed at exit with 120 and a message."""
    args = {"info": ["info"], "distance": ["distance", files / "real.npy", files / "syn.npy", "--metric", "fd"],
            "compare": ["compare", files / "real.npy", files / "syn.npy", "--permutations", 50]}[command]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "simgap", *map(str, args)], stdout=write,
                              stderr=subprocess.PIPE, timeout=300, env=env)
    finally:
        os.close(write)
    assert proc.returncode == cli.EXIT_PIPE, proc.stderr.decode()
    assert proc.stderr.decode().strip() == ""


def test_compare_summary_into_a_pipe_is_unchanged(files):
    """The summary goes through a buffer when stdout is not a terminal; its text is report.summary()'s."""
    proc = run("compare", files / "real.npy", files / "syn.npy", "--permutations", 50)
    assert proc.returncode == 0, proc.stderr
    import io

    report = simgap.compare(np.load(files / "real.npy"), np.load(files / "syn.npy"), n_permutations=50)
    buf = io.StringIO()
    report.summary(file=buf)
    assert proc.stdout == buf.getvalue()


# --------------------------------------------------------------------------- Ctrl-C

# The CLI's main() as `python -m simgap` runs it, saying on stderr when compare() reaches a phase (the
# test's only way to know where the SIGINT lands); nothing else is changed.
_PHASE_PROBE = """
import sys
import simgap.cli as cli
from simgap.compare import core

phase = sys.argv.pop(1)
original = getattr(core, phase)

def probe(*args, **kwargs):
    print("phase " + phase, file=sys.stderr, flush=True)
    return original(*args, **kwargs)

setattr(core, phase, probe)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """Large enough that the permutation test alone is one C++ call of several seconds."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(0)
    np.save(d / "real.npy", rng.normal(size=(8000, 16)).astype(np.float32))
    np.save(d / "syn.npy", (rng.normal(size=(8000, 16)) + 0.1).astype(np.float32))
    return d


# Seconds from entering the phase to inside its long C++ call (the permutation test first draws its
# relabellings in NumPy).
@pytest.mark.parametrize("phase, delay", [("mmd_test", 3.0), ("witness_and_bootstrap", 1.0)])
def test_ctrl_c_during_compare_exits_130_at_once(big_files, phase, delay):
    import signal
    import time

    with subprocess.Popen([sys.executable, "-c", _PHASE_PROBE, phase, "compare", big_files / "real.npy",
                           big_files / "syn.npy"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            line = proc.stderr.readline()
            assert line.strip() == f"phase {phase}", line + proc.stderr.read()
            time.sleep(delay)
            assert proc.poll() is None
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
            elapsed = time.monotonic() - start
        finally:
            proc.kill()
        out, err = proc.communicate()
    assert code == cli.EXIT_INTERRUPTED == 130, err
    assert elapsed < 2.0, f"exited {elapsed:.1f} s after SIGINT"
    assert err.strip() == "simgap: interrupted"
    assert out == ""


def test_a_long_call_is_interruptible(monkeypatch):
    """Any phase: a call that holds no interrupt check (time.sleep in a worker thread, as a C++ kernel
    that released the GIL) does not delay KeyboardInterrupt."""
    import signal
    import threading
    import time

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        cli.run_interruptibly(time.sleep, 60.0)
    assert time.monotonic() - start < 10.0  # 0.3 s but for the machine's load; not the 60 s of the call
    assert cli.run_interruptibly(sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        cli.run_interruptibly(lambda: 1 / 0)


@pytest.mark.parametrize("command", ["demo", "compare"])
def test_a_negative_seed_is_a_usage_error_naming_the_option(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--seed", "-1"])
    assert info.value.code == cli.EXIT_USAGE
    assert "--seed: expected a non-negative integer" in capsys.readouterr().err
