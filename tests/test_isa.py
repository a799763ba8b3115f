"""Every compiled instruction-set path (generic, AVX2, AVX-512) against the float64 reference.

The CPU tile loops are compiled once per instruction set and one is chosen when the process first
needs it; ``SIMGAP_CPU_ISA=generic|avx2|avx512`` forces a lower one.  The choice is made once per
process, so each instruction set runs in its own subprocess: the child computes every operation on
data written by the test, saves the results, and prints the instruction set it ran with; the
comparisons are made here, against ``_reference``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import simgap
import _reference as ref
from conftest import DTYPES, kernel_tol, rtol

KERNELS = ref.KERNELS
ISAS = ["generic", "avx2", "avx512"]  # lowest to highest
# (n, m, d): small and odd; and across the 192-row tile with widths that fill no vector exactly.
SHAPES = {"37x53x13": (37, 53, 13), "203x197x29": (203, 197, 29)}
N_PROJECTIONS = 40

CHILD = r"""
import os, sys
import numpy as np
import simgap

data = np.load(sys.argv[1])
isa = simgap.build_info()["cpu_isa"]
out = {}
for tag in sys.argv[3].split(","):
    for dt in ("float32", "float64"):
        x, y = data[tag + "/x"].astype(dt), data[tag + "/y"].astype(dt)
        for kernel in simgap.KERNELS:
            kw = {"kernel": kernel}
            if kernel in ("gaussian", "laplacian", "imq"):
                kw["bandwidth"] = float(data[tag + "/bw"])
            key = f"{tag}/{dt}/{kernel}/"
            out[key + "matrix"] = simgap.kernel_matrix(x, y, **kw)
            out[key + "self"] = simgap.kernel_matrix(x, **kw)
            out[key + "contract1"] = simgap.kernel_contract(x, y, data[tag + "/w1"], **kw)
            out[key + "contract7"] = simgap.kernel_contract(x, y, data[tag + "/w7"], **kw)
            out[key + "mmd2"] = np.array(simgap.mmd2(x, y, estimator="unbiased", **kw))
        out[f"{tag}/{dt}/sw"] = np.array(
            simgap.sliced_wasserstein(x, y, n_projections=int(sys.argv[4]), seed=3))
np.savez(sys.argv[2], **out)
# The choice is made once per process: changing the variable now changes nothing.
os.environ["SIMGAP_CPU_ISA"] = "generic"
print(isa, simgap.build_info()["cpu_isa"])
"""


def _data():
    """Inputs per shape: x, y (float64, away from the origin), weights, a bandwidth."""
    out = {}
    for tag, (n, m, d) in SHAPES.items():
        g = np.random.default_rng(zlib.crc32(tag.encode()))
        x = g.standard_normal((n, d)) + 1.5
        y = 1.3 * g.standard_normal((m, d)) + 1.5
        y[:, :3] += 0.5
        out[tag + "/x"], out[tag + "/y"] = x, y
        out[tag + "/w1"] = g.standard_normal(m)
        out[tag + "/w7"] = g.standard_normal((m, 7))
        out[tag + "/bw"] = np.array(0.8 * ref.median_bandwidth(x, y))
    return out


def _child_env(isa=None):
    env = dict(os.environ)
    env.pop("SIMGAP_CPU_ISA", None)
    if isa is not None:
        env["SIMGAP_CPU_ISA"] = isa
    return env


def _run_child(isa, tmp, data):
    inp, res = os.path.join(tmp, "in.npz"), os.path.join(tmp, f"out_{isa}.npz")
    if not os.path.exists(inp):
        np.savez(inp, **data)
    proc = subprocess.run([sys.executable, "-c", CHILD, inp, res, ",".join(SHAPES), str(N_PROJECTIONS)],
                          env=_child_env(isa), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    first, after = proc.stdout.split()
    with np.load(res) as f:
        return first, after, dict(f)


@pytest.fixture(scope="module")
def best_isa():
    """The instruction set chosen without the variable (this process may have it set)."""
    if "SIMGAP_CPU_ISA" not in os.environ:
        return simgap.build_info()["cpu_isa"]
    code = "import simgap; print(simgap.build_info()['cpu_isa'])"
    proc = subprocess.run([sys.executable, "-c", code], env=_child_env(), capture_output=True, text=True,
                          check=True, timeout=120)
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def isa_run(tmp_path_factory, best_isa):
    """isa -> (reported isa, isa after changing the variable, results), one subprocess per isa."""
    data = _data()
    tmp = str(tmp_path_factory.mktemp("isa"))
    cache = {}

    def get(isa):
        if ISAS.index(isa) > ISAS.index(best_isa):
            pytest.skip(f"this CPU / build runs at most {best_isa}")
        if isa not in cache:
            cache[isa] = _run_child(isa, tmp, data)
        return cache[isa]

    return data, get


def _inputs(data, tag, kernel):
    x, y = data[tag + "/x"], data[tag + "/y"]
    kw = {"kernel": kernel}
    if kernel in ref.BANDWIDTH_KERNELS:
        kw["bandwidth"] = float(data[tag + "/bw"])
    return x, y, kw


def _cast(a, dtype):
    """The float64 data as the child saw it (rounded to dtype), back in float64 for the reference."""
    return np.asarray(a).astype(dtype).astype(np.float64)


def test_best_isa_is_known(best_isa):
    assert best_isa in ISAS


@pytest.mark.parametrize("isa", ISAS)
def test_forced_isa_is_used(isa, isa_run):
    _, get = isa_run
    reported, after, _ = get(isa)
    assert reported == isa
    assert after == isa  # read once per process


@pytest.mark.parametrize("tag", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("isa", ISAS)
def test_kernels_match_reference(isa, kernel, dtype, tag, isa_run):
    data, get = isa_run
    _, _, res = get(isa)
    x, y, kw = _inputs(data, tag, kernel)
    x, y = _cast(x, dtype), _cast(y, dtype)
    key = f"{tag}/{np.dtype(dtype).name}/{kernel}/"

    k = ref.kernel_matrix(x, y, **kw)
    got = res[key + "matrix"]
    assert got.dtype == dtype and got.shape == k.shape
    np.testing.assert_allclose(got, k, **kernel_tol(dtype, k))

    kself = ref.kernel_matrix(x, x, **kw)
    np.testing.assert_allclose(res[key + "self"], kself, **kernel_tol(dtype, kself))

    tol = kernel_tol(dtype, k)
    for name, w in (("contract1", data[tag + "/w1"]), ("contract7", data[tag + "/w7"])):
        expected = k @ w
        bound = tol["rtol"] * (np.abs(k) @ np.abs(w)) + tol["atol"] * np.sum(np.abs(w), axis=0)
        got = res[key + name]
        assert got.dtype == np.float64 and got.shape == expected.shape
        err = np.abs(got - expected)
        assert np.all(err <= bound), f"{name}: max excess {np.max(err - bound):.3g}"

    expected = ref.mmd2(x, y, estimator="unbiased", **kw)
    terms = max(float(np.mean(np.abs(ref.kernel_matrix(a, b, **kw))))
                for a, b in [(x, x), (y, y), (x, y)])
    got = float(res[key + "mmd2"])
    assert abs(got - expected) <= rtol(dtype) * (abs(expected) + 0.01 * terms), (got, expected)


@pytest.mark.parametrize("tag", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("isa", ISAS)
def test_sliced_wasserstein_matches_reference(isa, dtype, tag, isa_run):
    data, get = isa_run
    _, _, res = get(isa)
    x, y = _cast(data[tag + "/x"], dtype), _cast(data[tag + "/y"], dtype)
    expected = ref.sliced_wasserstein(x, y, n_projections=N_PROJECTIONS, seed=3)
    got = float(res[f"{tag}/{np.dtype(dtype).name}/sw"])
    assert got == pytest.approx(expected, rel=rtol(dtype), abs=1e-12)
