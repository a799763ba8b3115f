"""Wall time of the CPU k-NN search and of prdc (three k-NN searches and two
ball counts) on Gaussian data, float32, best of 3 (k-NN) / 2 (prdc) runs.

    python benchmarks/knn_timing.py

Used for the "exact ball boundaries" entry of RESULTS.md; to time another
build, put it first on the path (an editable install's import hook wins over
PYTHONPATH, so use ``python -S`` with the site-packages directory added).
"""

from __future__ import annotations

import time

import numpy as np

import simgap


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    print(simgap.__file__)
    rng = np.random.default_rng(0)
    for n, d, k in ((20000, 64, 1), (20000, 64, 5), (20000, 8, 5), (50000, 16, 5)):
        x = rng.normal(size=(n, d)).astype(np.float32)
        y = rng.normal(size=(n, d)).astype(np.float32)
        simgap.nearest_neighbors(x[:500], y[:500], k=k)  # warm-up
        t_knn = best_of(3, lambda: simgap.nearest_neighbors(x, y, k=k))
        t_prdc = best_of(2, lambda: simgap.prdc(x, y, k=k))
        print(f"n=m={n} d={d} k={k} float32: knn {t_knn:.3f} s  prdc {t_prdc:.3f} s", flush=True)


if __name__ == "__main__":
    main()
