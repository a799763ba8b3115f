"""simgap.compare(group=...) on a 2-process gloo group on the CPU.

The ranks are subprocesses (this file run as a script) meeting through a file
store in a temporary directory, as in test_distributed.py.  Each rank calls
compare() on its (uneven) shards and writes its report; the test compares the
exact statistics with the single-process compare() on all rows, and the ranks
with each other.
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

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

HERE = os.path.abspath(__file__)
GROUP_TIMEOUT_S = 60
LAUNCH_TIMEOUT_S = 120
WORLD = 2
OPTIONS = dict(n_permutations=99, n_bootstrap=20, n_clusters=3, map_method="pca", map_points=200,
               c2st_folds=3, seed=3)
SPLITS = {"real": [100, 200], "synthetic": [170, 80]}  # uneven shards


def _data():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    syn = rng.normal(size=(250, 8)) + 0.4
    params = {"light": rng.uniform(0, 1, size=250), "style": rng.choice(["a", "b"], size=250)}
    return real, syn, params


def _shard(a, rank, sizes):
    start = sum(sizes[:rank])
    return a[start : start + sizes[rank]]


def _worker(rank, world, store, outdir):
    import datetime

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    real, syn, params = _data()
    rl, sl = _shard(real, rank, SPLITS["real"]), _shard(syn, rank, SPLITS["synthetic"])
    pl = {key: _shard(v, rank, SPLITS["synthetic"]) for key, v in params.items()}
    results = {}
    exact = simgap.compare(rl, sl, params=pl, group="auto", **OPTIONS)
    results["exact"] = (exact.mmd2, exact.p_value, exact.swd, exact.n_real, exact.n_synthetic,
                        exact.to_dict())
    small = simgap.compare(rl, sl, group=dist.group.WORLD, max_exact=120, **OPTIONS)
    results["small"] = (small.mmd2, small.p_value, small.swd, small.n_real, small.n_synthetic,
                        small.to_dict())
    with open(os.path.join(outdir, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(results, fh)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare_dist")
    store = tmp / "store"
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, HERE, str(r), str(WORLD), str(store), str(tmp)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
             for r in range(WORLD)]
    outputs = {}
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        for r, p in enumerate(procs):
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            outputs[r] = out.decode(errors="replace")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed:\n{outputs[r][-3000:]}"
    results = []
    for r in range(WORLD):
        with open(tmp / f"rank{r}.pkl", "rb") as fh:
            results.append(pickle.load(fh))
    return results


def test_exact_statistics_equal_the_single_process_compare(rank_results):
    real, syn, params = _data()
    single = simgap.compare(real, syn, params=params, **OPTIONS)
    for r in range(WORLD):
        mmd2, p_value, swd, n, m, _ = rank_results[r]["exact"]
        assert mmd2 == pytest.approx(single.mmd2, rel=1e-9)
        assert p_value == single.p_value
        assert swd == pytest.approx(single.swd, rel=1e-9)
        assert (n, m) == (300, 250)


def test_all_rows_fit_max_exact_so_the_rest_matches_too(rank_results):
    real, syn, params = _data()
    single = simgap.compare(real, syn, params=params, **OPTIONS)
    got = rank_results[0]["exact"][5]
    assert got["approximations"] == single.to_dict()["approximations"]
    assert got["fd"] == pytest.approx(single.fd, rel=1e-9)
    assert got["settings"]["bandwidth"] == pytest.approx(single.settings["bandwidth"], rel=1e-12)
    assert len(got["synthetic_scores"]) == 250 and len(got["real_coverage"]) == 300


def test_every_rank_returns_the_same_report(rank_results):
    for key in ("exact", "small"):
        assert rank_results[0][key][5] == rank_results[1][key][5]


def test_subsample_beyond_max_exact(rank_results):
    real, syn, _ = _data()
    mmd2, p_value, swd, n, m, d = rank_results[0]["small"]
    # still exact over all rows
    assert (n, m) == (300, 250)
    assert mmd2 == pytest.approx(simgap.mmd2(real, syn), rel=1e-9)
    assert mmd2 == pytest.approx(rank_results[0]["exact"][0], rel=1e-12)
    assert p_value == rank_results[0]["exact"][1]
    assert swd == pytest.approx(rank_results[0]["exact"][2], rel=1e-12)
    text = " ".join(d["approximations"])
    assert "subsample of 120 real and 120 synthetic rows" in text
    assert "synthetic_scores" in text
    assert len(d["synthetic_scores"]) == 120 and len(d["real_coverage"]) == 120
    assert d["mmd2_block"] is None
    # the same global rows as the single-process subsample (independent of the sharding)
    single = simgap.compare(real, syn, max_exact=120, **OPTIONS)
    assert [row["row"] for row in d["real_coverage"]] == single.real_coverage["row"].tolist()
    syn_ids = [row["id"] for row in d["synthetic_scores"]]
    assert syn_ids == sorted(set(syn_ids)) and max(syn_ids) < 250  # global row numbers


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
