"""Side-by-side timings for issue 3's ratio targets in one process, best of 3:
NumPy SGEMM (x @ y.T), torch.mm, simgap.mmd2 (exact, unbiased, gaussian) and the
naive torch MMD² (cdist + exp + means) at n = m = 10,000, d = 512 and 64.

Run:  python benchmarks/quick_ratios.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

import simgap


def best(fn, rounds=3):
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def naive(xt, yt, sigma):
    n, m = xt.shape[0], yt.shape[0]

    def k(a, b):
        return torch.exp(-torch.cdist(a, b) ** 2 / (2 * sigma * sigma))

    kxx, kyy = k(xt, xt), k(yt, yt)
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                 + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * k(xt, yt).mean())


def main():
    rng = np.random.default_rng(0)
    print(f"simgap {simgap.__version__}, {simgap.build_info()}, torch threads {torch.get_num_threads()}")
    print(f"{'d':>5} {'sgemm s':>8} {'torch.mm s':>10} {'simgap s':>9} {'naive s':>8} "
          f"{'simgap/(2*sgemm)':>17} {'naive/simgap':>13}")
    for d, sigma in ((512, 32.0), (64, 11.0)):
        n = 10_000
        x = rng.standard_normal((n, d), dtype=np.float32)
        y = rng.standard_normal((n, d), dtype=np.float32) + np.float32(0.05)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        ours = simgap.mmd2(x, y, bandwidth=sigma)
        assert abs(ours - naive(xt, yt, sigma)) < 2e-4
        t_gemm = best(lambda: x @ y.T)
        t_mm = best(lambda: xt @ yt.T)
        t_ours = best(lambda: simgap.mmd2(x, y, bandwidth=sigma))
        t_naive = best(lambda: naive(xt, yt, sigma))
        # simgap evaluates n(n-1)/2 + m(m-1)/2 + nm ~ 2 n^2 pairs (symmetric self blocks); SGEMM n^2.
        print(f"{d:5d} {t_gemm:8.3f} {t_mm:10.3f} {t_ours:9.3f} {t_naive:8.3f} "
              f"{t_ours / (2 * t_gemm):17.2f} {t_naive / t_ours:13.2f}")


if __name__ == "__main__":
    main()
