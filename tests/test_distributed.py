"""simgap.distributed on 2- and 3-process gloo groups on the CPU.

Each group is a set of subprocesses (this file run as a script) that meet
through a file store in a temporary directory, so no port is reserved and no
warning or state of torch.distributed reaches the test process.  Every rank
computes every scenario on its shard and writes its results; the test compares
them with the single-process functions on the concatenated data, and the ranks
with each other.  Every subprocess runs under an overall timeout.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch")
import torch.distributed  # noqa: E402

import simgap  # noqa: E402
from simgap.compare.inputs import seeds  # noqa: E402
from simgap.distributed import shard_indices, shard_range  # noqa: E402

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

HERE = os.path.abspath(__file__)
GROUP_TIMEOUT_S = 20  # init_process_group timeout inside the workers
LAUNCH_TIMEOUT_S = 120  # the whole group, from the test's side
# float32: the tiles of the kernel sums are accumulated in float32 and the tiles differ with the
# sharding; the statistics cancel large sums (1'K'1 ~ N^2), so the absolute error is set by the
# kernel's scale (k <= 1 here), as in conftest.kernel_tol.
TOL = {"float64": dict(rtol=1e-10, atol=1e-13), "float32": dict(rtol=1e-5, atol=1e-6)}


# ------------------------------------------------------------------------------ scenarios
def _data(n, m, d, dtype, seed=0, shift=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + shift).astype(dtype)
    return x, y


def _sizes(total, world, split):
    if world == 1:  # one rank (the NCCL test on a single GPU) holds every row, whatever the split
        return [total]
    if split == "even":
        return [shard_range(total, r, world)[1] - shard_range(total, r, world)[0] for r in range(world)]
    if split == "uneven":  # proportions 1 : 3 : 2
        w = np.array([1, 3, 2][:world], dtype=float)
        sizes = np.floor(total * w / w.sum()).astype(int)
        sizes[-1] += total - sizes.sum()
        return sizes.tolist()
    if split == "empty_last":  # the last rank has no rows
        base = [shard_range(total, r, world - 1) for r in range(world - 1)]
        return [b - a for a, b in base] + [0]
    if split == "empty_first":
        base = [shard_range(total, r, world - 1) for r in range(world - 1)]
        return [0] + [b - a for a, b in base]
    raise ValueError(split)


def _shard(a, rank, world, split):
    sizes = _sizes(a.shape[0], world, split)
    start = sum(sizes[:rank])
    return a[start : start + sizes[rank]]


# name: (function, data (n, m, d, dtype), x split, y split, options, weights?)
SCENARIOS = {
    "mmd2_f64_even": ("mmd2", (300, 250, 7, "float64"), "even", "even", {}, False),
    "mmd2_f32_uneven": ("mmd2", (301, 203, 5, "float32"), "uneven", "uneven", {}, False),
    "mmd2_empty": ("mmd2", (120, 97, 4, "float64"), "empty_last", "empty_first", {}, False),
    "mmd2_median_subsample": ("mmd2", (1400, 1100, 3, "float64"), "uneven", "even", {}, False),
    "mmd2_biased_laplacian": ("mmd2", (150, 170, 6, "float64"),
                              "uneven", "even", dict(kernel="laplacian", estimator="biased"), False),
    "mmd2_energy": ("mmd2", (150, 130, 6, "float64"), "even", "uneven", dict(kernel="energy"), False),
    "mmd2_polynomial_f32": ("mmd2", (180, 150, 6, "float32"), "even", "even", dict(kernel="polynomial"), False),
    # values ~1e42: past float32, so every rank computes in float64 (one rank's rows decide)
    "mmd2_polynomial_wide_f32": ("mmd2", (120, 100, 4, "float32"), "uneven", "even",
                                 dict(kernel="polynomial", gamma=1e13), False),
    "mmd_test_polynomial_wide_f32": ("mmd_test", (80, 70, 4, "float32"), "even", "uneven",
                                     dict(kernel="polynomial", gamma=1e13, n_permutations=20, seed=2), False),
    "mmd2_per_bandwidth": ("mmd2", (160, 140, 5, "float64"), "uneven", "uneven",
                           dict(bandwidth=[0.5, 2.0, 4.0], per_bandwidth=True), False),
    "mmd2_weighted": ("mmd2", (160, 140, 5, "float64"), "uneven", "empty_last", {}, True),
    "mmd2_weighted_unbiased": ("mmd2", (160, 140, 5, "float64"), "even", "uneven",
                               dict(estimator="unbiased"), True),
    "mmd2_batch": ("mmd2_batch", (200, 150, 5, "float64"), "uneven", "even", {}, False),
    "mmd_test_unbiased": ("mmd_test", (130, 110, 4, "float64"), "uneven", "even",
                          dict(n_permutations=99, seed=3), False),
    "mmd_test_biased_f32": ("mmd_test", (90, 120, 4, "float32"), "even", "empty_last",
                            dict(n_permutations=40, estimator="biased", seed=1), False),
    "sliced_f64": ("sliced_wasserstein", (300, 280, 6, "float64"), "uneven", "even",
                   dict(n_projections=50), False),
    "sliced_f32_p1": ("sliced_wasserstein", (257, 260, 6, "float32"), "even", "uneven",
                      dict(n_projections=33, p=1, seed=5), False),
    "sliced_weighted_empty": ("sliced_wasserstein", (200, 180, 4, "float64"), "empty_first", "even",
                              dict(n_projections=20, return_per_projection=True), True),
    # tiny memory budgets: several batches of relabellings / rounds of directions
    "mmd_test_small_batches": ("mmd_test", (70, 60, 3, "float64"), "uneven", "uneven",
                               dict(n_permutations=30, seed=2), False),
    "sliced_small_rounds": ("sliced_wasserstein", (90, 70, 3, "float64"), "uneven", "even",
                            dict(n_projections=20, seed=4), True),
    "sliced_few_directions": ("sliced_wasserstein", (60, 50, 3, "float64"), "even", "even",
                              dict(n_projections=2), False),
    # random Fourier features: the same frequencies on every rank, the feature sums added over the ranks
    "mmd2_rff": ("mmd2", (300, 250, 6, "float64"), "uneven", "even",
                 dict(estimator="rff", n_features=64, seed=3), False),
    "mmd2_rff_weighted_per_bandwidth": ("mmd2", (200, 180, 5, "float64"), "empty_last", "uneven",
                                        dict(estimator="rff", bandwidth=[0.5, 2.0], per_bandwidth=True,
                                             n_features=48, seed=1), True),
    "mmd2_rff_laplacian_f32": ("mmd2", (240, 200, 4, "float32"), "even", "empty_first",
                               dict(estimator="rff", kernel="laplacian", n_features=32, seed=2), False),
}


def _inputs(name):
    fn, (n, m, d, dt), xs, ys, opts, weighted = SCENARIOS[name]
    x, y = _data(n, m, d, dt, seed=len(name))
    kw = dict(opts)
    extra = {}
    if fn == "mmd2_batch":
        y2 = _data(m + 11, m, d, dt, seed=99)[0]
        extra["ys"] = [y, y2]
    if weighted:
        rng = np.random.default_rng(7)
        extra["x_weights"] = rng.uniform(0.1, 2.0, size=n)
        extra["y_weights"] = rng.uniform(0.1, 2.0, size=m)
    return fn, x, y, kw, extra, xs, ys


def _single(name):
    fn, x, y, kw, extra, _, _ = _inputs(name)
    if fn == "mmd2_batch":
        return simgap.mmd2_batch(x, extra["ys"], **kw)
    kw.update({k: v for k, v in extra.items() if k.endswith("weights")})
    return getattr(simgap, fn)(x, y, **kw)


DEVICE_SCENARIOS = list(SCENARIOS)  # every function has the device-resident path


def _distributed(name, rank, world, as_tensors=False, device="cpu"):
    import simgap.distributed as sd

    fn, x, y, kw, extra, xs, ys = _inputs(name)
    if as_tensors:
        import torch

        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        if "ys" in extra:
            extra["ys"] = [torch.from_numpy(a).to(device) for a in extra["ys"]]
    small = "small" in name
    sd.permutation.TEST_MEMORY_BYTES = 1 if small else simgap._estimators.TEST_MEMORY_BYTES
    sd.sliced._SLICED_MEMORY_BYTES = 1 if small else 256 << 20
    xl = _shard(x, rank, world, xs)
    if fn == "mmd2_batch":
        sets = [_shard(s, rank, world, ys if k == 0 else "uneven") for k, s in enumerate(extra["ys"])]
        return sd.mmd2_batch(xl, sets, **kw)
    kw = dict(kw)
    for key, split in (("x_weights", xs), ("y_weights", ys)):
        if key in extra:
            kw[key] = _shard(extra[key], rank, world, split)
    return getattr(sd, fn)(xl, _shard(y, rank, world, ys), **kw)


def _plain(result):
    if isinstance(result, simgap.MMDTestResult):
        return ("test", result.statistic, result.p_value, np.asarray(result.null_distribution))
    if isinstance(result, tuple):
        return ("tuple",) + tuple(result)
    return ("value", np.asarray(result, dtype=np.float64))


# compare(group=...) on device shards: data (n, m, d, dtype, seed) and options.
COMPARE_DATA = (300, 260, 6, "float32", 11)
COMPARE_OPTIONS = dict(n_permutations=50, n_bootstrap=20, max_exact=200, map_method="pca", seed=0)


def _compare_values(rep):
    return {"mmd2": rep.mmd2, "p_value": rep.p_value, "swd": rep.swd, "fd": rep.fd, "ci": rep.mmd2_ci,
            "bandwidth": rep.settings["bandwidth"],
            "prdc": dict(rep.prdc), "c2st_auc": rep.c2st_auc,
            "realism": rep.synthetic_scores["realism"].to_numpy(),
            **{key: rep.real_coverage[key].to_numpy()
               for key in ("row", "covered", "nn_distance", "radius", "nearest_synthetic")}}


# ---------------------------------------------------------------------------- the worker
def _set_ring_device(rule):
    """Make ``rule`` simgap.distributed's ring_device wherever it was imported
    (the modules of simgap.distributed and compare's sharded path)."""
    from simgap.distributed.ring import ring_device

    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").split(".")[0] == "simgap":
            for key, value in list(vars(mod).items()):
                if value is ring_device:
                    setattr(mod, key, rule)


def _worker(rank, world, store, outdir, job):
    import datetime

    import torch.distributed as dist

    import simgap.distributed as sd

    backend = "gloo"
    if job == "nccl":
        import torch

        torch.cuda.set_device(rank)
        backend = "nccl"
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S if job != "crash" and job != "hang"
                                                       else 3))
    results = {}
    if job == "nccl":
        # Real CUDA shards over NCCL: the device-resident ring (GPU messages, GPU kernel sums).
        import torch

        taken = []
        rule = sd.ring.ring_device

        def spy(comm, device):
            taken.append(rule(comm, device))
            return taken[-1]

        _set_ring_device(spy)
        for name in DEVICE_SCENARIOS:
            results[name] = _plain(_distributed(name, rank, world, as_tensors=True, device=f"cuda:{rank}"))
        results["taken"] = [str(t) for t in taken]
        # compare(group=...) with CUDA shards: its exact statistics take the device path.
        x, y = _data(300, 260, 6, "float32", seed=11)
        xl, yl = _shard(x, rank, world, "uneven"), _shard(y, rank, world, "even")
        rep = simgap.compare(torch.from_numpy(xl).cuda(), torch.from_numpy(yl).cuda(), group="auto",
                             n_permutations=50, seed=0)
        results["compare"] = (rep.mmd2, rep.p_value, rep.swd, rep.fd, dict(rep.prdc), rep.settings["device"])
        results["compare_taken"] = [str(t) for t in taken[len(results["taken"]):]]
    elif job == "scenarios":
        for name in SCENARIOS:
            t0 = time.perf_counter()
            results[name] = (_plain(_distributed(name, rank, world)), time.perf_counter() - t0)
        x, y = _data(40, 30, 3, "float64")
        # A bad shard on one rank: every rank must raise, naming it, and the group stays usable.
        bad = x[:10].copy()
        if rank == world - 1:
            bad[2, 1] = np.nan
        for label, call in (
            ("nan", lambda: sd.mmd2(bad, y[:10])),
            ("options", lambda: sd.mmd2(x[:10], y[:10], kernel="gaussian" if rank else "laplacian")),
            # an array's repr rounds to 8 digits: a 1e-9 difference went unnoticed
            ("array_options", lambda: sd.mmd2(x[:10], y[:10], bandwidth=np.array([0.5 + rank * 1e-9]))),
            ("compare_options", lambda: simgap.compare(x[:10], y[:10], n_permutations=10, n_bootstrap=5 + rank,
                                                       map_method="pca", group="auto")),
            ("features", lambda: sd.sliced_wasserstein(x[:10, : 2 + (rank == 1)], y[:10, : 2 + (rank == 1)])),
            ("block", lambda: sd.mmd2(x[:10], y[:10], estimator="block")),
            ("rff_seeds", lambda: sd.mmd2(x[:10], y[:10], estimator="rff", seed=rank)),
        ):
            try:
                call()
                results[label] = ("no error",)
            except Exception as exc:  # recorded for the test to check
                results[label] = (type(exc).__name__, str(exc))
        results["after_errors"] = _plain(sd.mmd2(x[rank::world], y[rank::world], bandwidth=1.0))
        # seed=None: every rank must draw the same relabellings / directions (rank 0's draw).
        xs, ys = _data(3, 3, 2, "float64", seed=5)
        results["unseeded_test"] = _plain(sd.mmd_test(xs[rank::world], ys[rank::world], 40, bandwidth=1.0,
                                                      seed=None))
        results["unseeded_sliced"] = _plain(sd.sliced_wasserstein(x[rank::world], y[rank::world], seed=None))
    elif job == "device_ring":
        # The device-resident ring (CUDA shards, NCCL) with the stand-in CUDA module of
        # test_cuda_orchestration on CPU tensors, gloo carrying the torch buffers.
        import torch

        from simgap._ops import dispatch
        from test_cuda_orchestration import install_stand_in

        fake = install_stand_in()  # every torch tensor is a CUDA one
        _set_ring_device(lambda comm, device: torch.device("cpu"))
        for route in ("fused", "gemm"):
            dispatch.FORCE_ROUTE = route
            for name in DEVICE_SCENARIOS:
                fake.calls.clear()
                results[(route, name)] = (_plain(_distributed(name, rank, world, as_tensors=True)),
                                          len(fake.calls))
        # compare(group=...) with device shards: the shards stay on the (stand-in)
        # device and rank 0 computes the subsample statistics through the device branches.
        x, y = _data(*COMPARE_DATA)
        xl, yl = _shard(x, rank, world, "uneven"), _shard(y, rank, world, "even")
        fake.calls.clear()
        rep = simgap.compare(torch.from_numpy(xl), torch.from_numpy(yl), group="auto", **COMPARE_OPTIONS)
        results["compare"] = (_compare_values(rep), rep.settings["device"], len(fake.calls))
        # A rank whose shard has a NaN on the device fails every rank.
        x, y = _data(40, 30, 3, "float64")
        bad = torch.from_numpy(x[:10].copy())
        if rank == world - 1:
            bad[2, 1] = float("nan")
        try:
            sd.mmd2(bad, torch.from_numpy(y[:10]))
            results["device_nan"] = ("no error",)
        except Exception as exc:
            results["device_nan"] = (type(exc).__name__, str(exc))
    elif job == "compare_host":  # the reference for the device_ring job's compare
        x, y = _data(*COMPARE_DATA)
        xl, yl = _shard(x, rank, world, "uneven"), _shard(y, rank, world, "even")
        rep = simgap.compare(xl, yl, group="auto", **COMPARE_OPTIONS)
        results["compare"] = (_compare_values(rep), rep.settings["device"])
    elif job == "crash":
        if rank == 1:
            raise SystemExit(7)  # the user's code fails on one rank before the call
        sd.mmd2(np.ones((5, 2)), np.zeros((5, 2)))
    elif job == "hang":
        if rank == 1:
            time.sleep(60)  # never arrives; the test kills it
        sd.mmd_test(np.ones((5, 2)), np.zeros((5, 2)), n_permutations=5)
    with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(results, fh)
    dist.destroy_process_group()


def _launch(tmp_path, world, job, wait_for=None, timeout=LAUNCH_TIMEOUT_S):
    """Start `world` workers; wait for all (or only the ranks in wait_for); return (procs, outputs)."""
    store = tmp_path / f"store_{job}_{world}"
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONWARNINGS="ignore")
    procs = [
        subprocess.Popen([sys.executable, HERE, str(r), str(world), str(store), str(tmp_path), job],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        for r in range(world)
    ]
    outputs = {}
    deadline = time.monotonic() + timeout
    try:
        for r, p in enumerate(procs):
            if wait_for is not None and r not in wait_for:
                continue
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs[r] = out.decode(errors="replace")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    return procs, outputs


def _run_group(tmp_path, world, job, timeout=LAUNCH_TIMEOUT_S):
    """Launch a group for `job`, check that every rank succeeded, return their results."""
    procs, outputs = _launch(tmp_path, world, job, timeout=timeout)
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{outputs[r][-3000:]}"
    results = []
    for r in range(world):
        with open(tmp_path / f"rank{r}.pkl", "rb") as fh:
            results.append(pickle.load(fh))
    return results


@pytest.fixture(scope="module", params=[2, 3], ids=["2proc", "3proc"])
def group_results(request, tmp_path_factory):
    world = request.param
    tmp = tmp_path_factory.mktemp(f"dist{world}")
    return world, _run_group(tmp, world, "scenarios")


# ------------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_equals_single_process(group_results, name):
    world, results = group_results
    expected = _plain(_single(name))
    tol = TOL[SCENARIOS[name][1][3]]
    first = results[0][name][0]
    for r in range(world):
        got = results[r][name][0]
        assert got[0] == expected[0]
        for g, e in zip(got[1:], expected[1:]):
            np.testing.assert_allclose(g, e, **tol, err_msg=f"{name}, rank {r}")
        for g, f in zip(got[1:], first[1:]):  # the same bits on every rank
            np.testing.assert_array_equal(g, f, err_msg=f"{name}: rank {r} differs from rank 0")


def test_permutation_test_has_the_single_process_null(group_results):
    world, results = group_results
    got = results[0]["mmd_test_unbiased"][0]
    expected = _single("mmd_test_unbiased")
    assert got[2] == expected.p_value
    assert got[3].shape == (99,)


def test_unseeded_calls_draw_the_same_numbers_on_every_rank(group_results):
    """seed=None made each rank draw its own relabellings: the labels of a column
    no longer marked n rows, and the null distribution was wrong (silently)."""
    import itertools

    world, group_results = group_results
    x, y = _data(3, 3, 2, "float64", seed=5)
    # every rank holds rows rank::world of x and of y: the pooled order is x shards, then y shards
    order = [i for r in range(world) for i in range(3)[r::world]]
    xg, yg = x[order], y[order]
    valid = [simgap.mmd2(np.vstack([xg, yg])[list(c)],
                         np.vstack([xg, yg])[[i for i in range(6) if i not in c]], bandwidth=1.0)
             for c in itertools.combinations(range(6), 3)]
    for r in range(world):
        got = group_results[r]["unseeded_test"]
        assert got[1] == pytest.approx(simgap.mmd2(xg, yg, bandwidth=1.0), rel=1e-12)
        for v in got[3]:
            assert min(abs(v - w) for w in valid) < 1e-12, v
        np.testing.assert_array_equal(got[3], group_results[0]["unseeded_test"][3])
        np.testing.assert_array_equal(group_results[r]["unseeded_sliced"][1], group_results[0]["unseeded_sliced"][1])


def test_a_bad_rank_fails_every_rank(group_results):
    world, results = group_results
    for r in range(world):
        kind, msg = results[r]["nan"]
        assert kind == "ValueError"
        assert "NaN" in msg
        if r != world - 1:
            assert f"rank {world - 1}" in msg
        for key in ("options", "array_options", "compare_options"):
            kind, msg = results[r][key]
            assert kind == "ValueError" and "different options" in msg, (key, msg)
        kind, msg = results[r]["features"]
        assert kind == "ValueError" and "features" in msg
        kind, msg = results[r]["block"]
        assert kind == "NotImplementedError" and "not distributed" in msg
        kind, msg = results[r]["rff_seeds"]
        assert kind == "ValueError" and "different options" in msg
        assert results[r]["after_errors"][0] == "value"


@pytest.mark.parametrize("world", [1, 2, 3])  # 1: as the NCCL test on a single GPU
def test_device_resident_ring_equals_single_process(tmp_path, world):
    """Every distributed function with the shards kept on the (stand-in) device:
    the ring's messages and the sliced all-to-all are torch buffers and the
    kernel sums, sorts and 1-D distances go through _cuda_ops,
    on both routes; the results are the single-process ones, the same on every
    rank.  A NaN on one rank's device shard fails every rank."""
    results = _run_group(tmp_path, world, "device_ring")
    for name in DEVICE_SCENARIOS:
        expected = _plain(_single(name))
        tol = TOL[SCENARIOS[name][1][3]]
        for route in ("fused", "gemm"):
            first = results[0][(route, name)][0]
            # The kernels ran through the device path (on every rank; for sliced
            # Wasserstein, on the ranks that own directions).
            calls = [results[r][(route, name)][1] for r in range(world)]
            if SCENARIOS[name][4].get("estimator") != "rff":  # the rff sums are torch operations
                assert (any if SCENARIOS[name][0] == "sliced_wasserstein" else all)(c > 0 for c in calls), (name, calls)
            for r in range(world):
                got = results[r][(route, name)][0]
                assert got[0] == expected[0]
                for g, e in zip(got[1:], expected[1:]):
                    np.testing.assert_allclose(g, e, **tol, err_msg=f"{name} ({route}), rank {r}")
                for g, f in zip(got[1:], first[1:]):
                    np.testing.assert_array_equal(g, f, err_msg=f"{name} ({route}): rank {r} differs")
    # compare(group=...) on device shards: the same report as on host shards, with
    # the subsample statistics computed by rank 0 on its device; the exact
    # statistics are those of all rows, and the subsample's k-NN statistics those
    # of the single-process compare (the same global rows).
    (tmp_path / "host").mkdir()
    host = _run_group(tmp_path / "host", world, "compare_host")
    x, y = _data(*COMPARE_DATA)
    sub = _compare_values(simgap.compare(x, y, **COMPARE_OPTIONS))
    sigma = sub["bandwidth"]  # the single-process compare's: the median of the same subsample
    exact = {"mmd2": simgap.mmd2(x, y, bandwidth=sigma), "swd": simgap.sliced_wasserstein(x, y, seed=seeds(0, 12)[6]),
             "p_value": simgap.mmd_test(x, y, COMPARE_OPTIONS["n_permutations"], bandwidth=sigma,
                                        seed=seeds(0, 12)[3]).p_value}
    for r in range(world):
        got, device, calls = results[r]["compare"]
        assert device == "cuda:0" and host[r]["compare"][1] == "cpu"
        assert calls > 0
        for key, want in host[0]["compare"][0].items():
            if key == "prdc":
                assert got[key] == pytest.approx(want, abs=1e-12), key
            elif key in ("row", "covered", "nearest_synthetic"):
                np.testing.assert_array_equal(got[key], want, err_msg=key)
            else:
                np.testing.assert_allclose(got[key], want, rtol=1e-5, atol=1e-9, err_msg=key)
        assert got["bandwidth"] == sigma
        for key in ("mmd2", "swd"):
            assert got[key] == pytest.approx(exact[key], rel=1e-5), key
        assert got["p_value"] == exact["p_value"]
        assert got["prdc"] == pytest.approx(sub["prdc"], abs=1e-12)
        for key in ("row", "covered", "nearest_synthetic"):
            np.testing.assert_array_equal(got[key], sub[key], err_msg=key)
        for key in ("nn_distance", "radius"):
            np.testing.assert_allclose(got[key], sub[key], rtol=1e-6, err_msg=key)
    for r in range(world):
        kind, msg = results[r]["device_nan"]
        assert kind == "ValueError" and "NaN" in msg
        if r != world - 1:
            assert f"rank {world - 1}" in msg


@pytest.mark.gpu
def test_nccl_device_ring_equals_single_process(tmp_path):
    """On one or two GPUs (one rank per GPU): CUDA shards over NCCL take the
    device-resident path and give the single-process values (the functions of
    simgap.distributed, and compare(group=...)'s exact statistics)."""
    import torch

    from conftest import HAS_CUDA

    if not HAS_CUDA or not torch.distributed.is_nccl_available():
        pytest.skip("needs a CUDA GPU, NCCL and a simgap build with CUDA")
    world = min(2, torch.cuda.device_count())
    x, y = _data(300, 260, 6, "float32", seed=11)
    single = simgap.compare(x, y, n_permutations=50, seed=0)
    for r, res in enumerate(_run_group(tmp_path, world, "nccl", timeout=280)):  # CUDA and NCCL start-up
        assert res["compare_taken"] and all(t == f"cuda:{r}" for t in res["compare_taken"])
        mmd2, p_value, swd, fd, prdc, device = res["compare"]
        assert device == "cuda:0"  # rank 0 computed the subsample statistics on its GPU
        assert fd == pytest.approx(single.fd, rel=1e-4)
        assert prdc == pytest.approx(single.prdc, abs=1e-12)
        assert mmd2 == pytest.approx(single.mmd2, rel=1e-4, abs=1e-6)
        assert p_value == single.p_value
        assert swd == pytest.approx(single.swd, rel=1e-4)
        assert res["taken"] and all(t == f"cuda:{r}" for t in res["taken"]), res["taken"]
        for name in DEVICE_SCENARIOS:
            expected = _plain(_single(name))
            for g, e in zip(res[name][1:], expected[1:]):
                np.testing.assert_allclose(g, e, **TOL[SCENARIOS[name][1][3]], err_msg=f"{name}, rank {r}")


def test_ring_device_rule(monkeypatch):
    """Which shards stay on the GPU: CUDA shards on the NCCL group's current
    device, with a CUDA build; anything else takes the host ring."""
    import types

    import torch

    from simgap._ops import backend as _backend
    from simgap.distributed.ring import ring_device

    nccl = types.SimpleNamespace(device=torch.device("cuda", 1))
    gloo = types.SimpleNamespace(device=torch.device("cpu"))
    monkeypatch.setattr(_backend, "CUDA", object())
    assert ring_device(nccl, "cuda:1") == torch.device("cuda", 1)
    assert ring_device(nccl, "cuda:0") is None
    assert ring_device(nccl, "cpu") is None
    assert ring_device(gloo, "cuda:1") is None
    monkeypatch.setattr(_backend, "CUDA", None)
    assert ring_device(nccl, "cuda:1") is None


def test_a_crashed_rank_does_not_hang_the_others(tmp_path):
    t0 = time.monotonic()
    procs, outputs = _launch(tmp_path, 2, "crash")
    assert procs[1].returncode == 7
    assert procs[0].returncode != 0, outputs[0]
    assert time.monotonic() - t0 < LAUNCH_TIMEOUT_S


def test_a_missing_rank_is_named_after_the_timeout(tmp_path):
    procs, outputs = _launch(tmp_path, 2, "hang", wait_for={0})
    assert procs[0].returncode != 0
    assert "1 failed to pass monitoredBarrier" in outputs[0], outputs[0][-2000:]


# --------------------------------------------------------------------- single-process parts
@pytest.mark.parametrize("n,world", [(0, 1), (1, 3), (10, 3), (11, 4), (97, 5)])
def test_shards_cover_every_row_once(n, world):
    for strided in (False, True):
        parts = [shard_indices(n, r, world, strided=strided) for r in range(world)]
        allidx = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(allidx, np.arange(n))
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1
    assert np.array_equal(np.concatenate([shard_indices(n, r, world) for r in range(world)]), np.arange(n))


def test_shard_range_checks_its_arguments():
    with pytest.raises(ValueError, match="rank must be < world"):
        shard_range(10, 3, 3)
    with pytest.raises(TypeError):
        shard_range(10.0, 0, 2)


def test_merge_stores_joins_the_parts_in_order(tmp_path):
    from simgap.distributed import merge_stores

    rng = np.random.default_rng(0)
    full = rng.normal(size=(11, 4)).astype(np.float32)
    labels = np.array([f"s{i}" for i in range(11)])
    parts = []
    for r in range(3):
        idx = shard_indices(11, r, 3)
        parts.append(simgap.save_embeddings(tmp_path / f"rank{r}", full[idx], metadata={"label": labels[idx]},
                                            info={"model_class": "M"}).path)
    merged = merge_stores(parts, tmp_path / "all" / "store", chunk_rows=3)
    np.testing.assert_array_equal(np.asarray(merged.embeddings), full)
    np.testing.assert_array_equal(merged.metadata["label"], labels)
    assert merged.manifest["model_class"] == "M"
    other = simgap.save_embeddings(tmp_path / "other", full[:2], info={"model_class": "N"}).path
    with pytest.raises(ValueError, match="different models"):
        merge_stores([parts[0], other], tmp_path / "bad")


def test_needs_an_initialised_group():
    import simgap.distributed as sd

    if torch.distributed.is_initialized():  # pragma: no cover
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        sd.mmd2(np.ones((3, 2)), np.zeros((3, 2)))


def test_importing_simgap_does_not_import_torch_distributed():
    code = "import sys, simgap, simgap.distributed; print('torch.distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])


def test_inputs_on_different_devices_are_named(tmp_path):
    import torch.distributed as dist

    import simgap.distributed as sd

    if dist.is_initialized():  # pragma: no cover
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        x, y = torch.zeros(4, 2), torch.zeros(3, 2, device="meta")  # meta: a second device without a GPU
        for call in (lambda: sd.mmd2(x, y), lambda: sd.mmd_test(x, y, 10), lambda: sd.sliced_wasserstein(x, y)):
            with pytest.raises(ValueError, match="different devices.*y on meta"):
                call()
    finally:
        dist.destroy_process_group()
