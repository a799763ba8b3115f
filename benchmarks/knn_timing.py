"""Wall time of the CPU k-NN search and of prdc (three k-NN searches and two
ball counts) on Gaussian data, float32, best of 3 (k-NN) / 2 (prdc) runs after a warm-up call.

    python benchmarks/knn_timing.py

Used for the "exact ball boundaries" entry of RESULTS.md; to time another
build, put it first on the path (an editable install's import hook wins over
PYTHONPATH, so use ``python -S`` with the site-packages directory added).
"""

from __future__ import annotations

import numpy as np

import simgap
from quick_ratios import best  # best of `rounds` calls after a warm-up (this folder is on sys.path)


def main() -> None:
    print(simgap.__file__)
    rng = np.random.default_rng(0)
    for n, d, k in ((20000, 64, 1), (20000, 64, 5), (20000, 8, 5), (50000, 16, 5)):
        x = rng.normal(size=(n, d)).astype(np.float32)
        y = rng.normal(size=(n, d)).astype(np.float32)
        t_knn = best(lambda: simgap.nearest_neighbors(x, y, k=k), rounds=3)
        t_prdc = best(lambda: simgap.prdc(x, y, k=k), rounds=2)
        print(f"n=m={n} d={d} k={k} float32: knn {t_knn:.3f} s  prdc {t_prdc:.3f} s", flush=True)


if __name__ == "__main__":
    main()
