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
from simgap.compare.inputs import seeds  # noqa: E402

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


def _images(m):
    """One 4 x 4 grey image per synthetic row, each of its own grey level."""
    return [np.full((4, 4), i / (m - 1), dtype=np.float32) for i in range(m)]


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
    # A rank with no real rows (all of them on rank 1).
    empty = simgap.compare(rl if rank else rl[:0], sl, group="auto", **OPTIONS)
    results["empty"] = (empty.mmd2, empty.p_value, empty.n_real)
    # Beyond max_exact with params and thumbnails: the HTML looks both up by input row.
    with_params = simgap.compare(rl, sl, params=pl, group="auto", max_exact=40, **OPTIONS)
    if rank == 0:
        html = os.path.join(outdir, "small.html")
        with_params.to_html(html, images={"synthetic": _images(len(syn))})
        results["html"] = (html, with_params.least_realistic(20)["row"].tolist(),
                           with_params.synthetic_scores["row"].tolist(), with_params.params)
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


def test_html_after_a_subsampled_distributed_compare_looks_up_params_and_images_by_row(rank_results):
    """Its params held the subsample's rows while the map indexed them by global
    row (IndexError), and its thumbnails were taken by position in the subsample."""
    from simgap._html import _thumb

    html_path, least, rows, params = rank_results[0]["html"]
    real, syn, all_params = _data()
    assert len(rows) == 40 and len(set(rows)) == 40 and max(rows) < 250
    np.testing.assert_array_equal(params.index.to_numpy(), rows)
    np.testing.assert_allclose(params["light"].to_numpy(), all_params["light"][rows])
    with open(html_path, encoding="utf-8") as fh:
        text = fh.read()
    images = _images(250)
    for row in least:
        assert _thumb(images, row, "synthetic") in text


def test_a_rank_may_hold_no_rows_of_a_set(rank_results):
    real, syn, _ = _data()
    single = simgap.compare(real[SPLITS["real"][0]:], syn, **OPTIONS)
    for r in range(WORLD):
        mmd2, p_value, n_real = rank_results[r]["empty"]
        assert n_real == SPLITS["real"][1]
        assert mmd2 == pytest.approx(single.mmd2, rel=1e-9) and p_value == single.p_value


def test_subsample_beyond_max_exact(rank_results):
    real, syn, _ = _data()
    mmd2, p_value, swd, n, m, d = rank_results[0]["small"]
    # still exact over all rows, with the bandwidth the single-process compare() takes
    # (the median heuristic of the same subsample, the same seed)
    assert (n, m) == (300, 250)
    sigma = d["settings"]["bandwidth"]
    assert sigma == simgap.compare(real, syn, max_exact=120, **OPTIONS).settings["bandwidth"]
    assert mmd2 == pytest.approx(simgap.mmd2(real, syn, bandwidth=sigma), rel=1e-9)
    assert p_value == simgap.mmd_test(real, syn, OPTIONS["n_permutations"], bandwidth=sigma,
                                      seed=seeds(OPTIONS["seed"], 12)[3]).p_value
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
