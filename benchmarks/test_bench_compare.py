"""End-to-end domain-gap analysis: simgap.compare on 20,000 real and 20,000
synthetic 512-d float32 embeddings with 1,000 permutations (issue 6's target:
a few minutes at most on a 2-core machine).

Run:  python -m pytest benchmarks/test_bench_compare.py -q --benchmark-columns=median,min,max
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import simgap

from conftest import make_data


def test_compare_20k_512(benchmark):
    n, d = 20_000, 512
    x, y = make_data(n, n, d, np.float32, shift=0.05)
    rng = np.random.default_rng(1)
    params = pd.DataFrame({"blur": rng.uniform(0, 2, n), "light": rng.choice(["dusk", "noon", "night"], n)})
    # check before timing: a small slice agrees with the public metric functions
    small = simgap.compare(x[:500], y[:500], n_permutations=100, n_bootstrap=20)
    bw = small.settings["bandwidth"]
    assert abs(small.mmd2 - simgap.mmd2(x[:500], y[:500], bandwidth=bw)) < 1e-6

    def run():
        return simgap.compare(x, y, params=params, n_permutations=1000)

    report = benchmark.pedantic(run, rounds=1, iterations=1)
    assert report.p_value < 0.05  # the 0.05 shift in all 512 dims is detectable at this size
    # 20k per set is at the exact threshold: only the classifier test is subsampled (c2st_max)
    assert [a for a in report.approximations if not a.startswith("classifier")] == []
    benchmark.extra_info.update({
        "device": "cpu", "threads": torch.get_num_threads(), "n": n, "m": n, "d": d, "dtype": "float32",
        "n_permutations": 1000, "mmd2": report.mmd2, "p_value": report.p_value, "c2st_auc": report.c2st_auc,
    })
