"""The library is safe to call from several Python threads at once."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import simgap
from conftest import DTYPES, gap_pair

N_THREADS = 4


def _inputs(dtype):
    # Different data per task, so a result computed from another thread's input is caught.
    rng = np.random.default_rng(99)
    tasks = []
    for i in range(2 * N_THREADS):
        x, y = gap_pair(rng, 600 + 37 * i, 500 + 11 * i, 16, dtype, shift=0.3 + 0.1 * i)
        tasks.append((x, y, rng.random(len(x)) + 0.1))
    return tasks


def _work(task):
    x, y, a = task
    return (
        simgap.mmd2(x, y),
        simgap.mmd2(x, y, kernel="laplacian", x_weights=a),
        simgap.sliced_wasserstein(x, y, n_projections=64, seed=3),
        simgap.sliced_wasserstein(x, y, n_projections=32, p=1, seed=8, x_weights=a),
        simgap.kernel_contract(x, y, np.ones(len(y)), bandwidth=2.0),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_concurrent_calls_match_serial(dtype):
    tasks = _inputs(dtype)
    serial = [_work(t) for t in tasks]
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        concurrent = list(pool.map(_work, tasks))
    for s, c in zip(serial, concurrent):
        assert s[:4] == c[:4]
        np.testing.assert_array_equal(s[4], c[4])
    # The tasks really differ from each other.
    assert len({s[0] for s in serial}) == len(tasks)


def test_concurrent_same_input(rng):
    x, y = gap_pair(rng, 1500, 1200, 8, np.float64)
    expected = (simgap.mmd2(x, y), simgap.sliced_wasserstein(x, y))
    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        futures = [pool.submit(lambda: (simgap.mmd2(x, y), simgap.sliced_wasserstein(x, y)))
                   for _ in range(N_THREADS)]
        results = [f.result() for f in futures]
    assert all(r == expected for r in results)


def test_threadpoolctl_and_omp_num_threads_limit_the_kernels():
    """The OpenMP threads of the C++ kernels follow threadpoolctl and OMP_NUM_THREADS."""
    import subprocess
    import sys

    threadpoolctl = pytest.importorskip("threadpoolctl")
    from simgap import _C

    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert _C.max_threads() == 1
    code = "import simgap._C as C; print(C.max_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
