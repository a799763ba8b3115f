"""Shared pieces of the benchmark suites: data, float64 references, baselines.

Every benchmark checks its result against a float64 reference before timing,
and keys its figures by size, dtype and device (pytest-benchmark's
``extra_info``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


def make_data(n: int, m: int, d: int, dtype, seed: int = 0, shift: float = 0.05):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + shift).astype(dtype)
    return x, y


def mmd2_reference(x: np.ndarray, y: np.ndarray, sigma: float, chunk: int = 2048) -> float:
    """Unbiased gaussian MMD² in float64, chunked so it fits in memory."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64))
    yt = torch.from_numpy(np.asarray(y, dtype=np.float64))

    def ksum(a, b, same):
        total = 0.0
        for i in range(0, a.shape[0], chunk):
            d2 = torch.cdist(a[i : i + chunk], b, compute_mode="donot_use_mm_for_euclid_dist") ** 2
            k = torch.exp(-d2 / (2 * sigma * sigma))
            total += float(k.sum())
        if same:
            total -= a.shape[0]  # k(x, x) = 1 on the diagonal
        return total

    n, m = xt.shape[0], yt.shape[0]
    return (
        ksum(xt, xt, True) / (n * (n - 1))
        + ksum(yt, yt, True) / (m * (m - 1))
        - 2 * ksum(xt, yt, False) / (n * m)
    )


def torch_naive_mmd2(x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    """The usual few-line torch MMD² (cdist + exp + means over the three blocks)."""
    def k(a, b):
        return torch.exp(-torch.cdist(a, b) ** 2 / (2 * sigma * sigma))

    n, m = x.shape[0], y.shape[0]
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def sw_reference(x: np.ndarray, y: np.ndarray, theta: np.ndarray, p: float = 2.0) -> float:
    """Sliced W_p in float64 for equal sample sizes: sort both projections."""
    px = np.sort(np.asarray(x, dtype=np.float64) @ theta, axis=0)
    py = np.sort(np.asarray(y, dtype=np.float64) @ theta, axis=0)
    return float(np.mean(np.abs(px - py) ** p) ** (1 / p))


def torch_naive_sw(x: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, p: float = 2.0) -> float:
    """matmul + sort, equal sample sizes."""
    px = torch.sort(x @ theta, dim=0).values
    py = torch.sort(y @ theta, dim=0).values
    return float(((px - py).abs() ** p).mean() ** (1 / p))


@pytest.fixture(scope="session")
def threads() -> int:
    return torch.get_num_threads()
