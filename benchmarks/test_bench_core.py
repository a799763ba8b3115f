"""First benchmarks of the foundation: exact MMD² and sliced Wasserstein against
the naive torch versions (cdist + exp; matmul + sort) on the same data.

Run:  python -m pytest benchmarks -q --benchmark-columns=median,min,max
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import simgap

from conftest import make_data, mmd2_reference, sw_reference, torch_naive_mmd2, torch_naive_sw

MMD_CASES = [(10_000, 512), (10_000, 64), (2_000, 512)]
SW_CASES = [(100_000, 512, 128), (20_000, 128, 1024)]
SIGMA = {512: 32.0, 64: 11.0}


def _info(benchmark, **kw):
    benchmark.extra_info.update({"device": "cpu", "threads": torch.get_num_threads(), **kw})


@pytest.mark.parametrize("n,d", MMD_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["simgap", "torch_naive"])
def test_mmd2_gaussian_f32(benchmark, impl, n, d):
    x, y = make_data(n, n, d, np.float32)
    sigma = SIGMA.get(d, 32.0)
    ref = mmd2_reference(x, y, sigma)
    if impl == "simgap":
        fn = lambda: simgap.mmd2(x, y, bandwidth=sigma)  # noqa: E731
    else:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        fn = lambda: torch_naive_mmd2(xt, yt, sigma)  # noqa: E731
    got = fn()  # check (and warm up) before timing
    scale = 1e-4 * 2.0  # kernel terms are <= 1: absolute error relative to their size
    assert abs(got - ref) <= scale, (got, ref)
    _info(benchmark, impl=impl, n=n, m=n, d=d, dtype="float32", mmd2=got, reference=ref)
    benchmark.pedantic(fn, rounds=3, iterations=1)


@pytest.mark.parametrize("n,d", [(10_000, 512)], ids=lambda v: str(v))
def test_mmd2_gaussian_f32_geomloss(benchmark, n, d):
    """GeomLoss's tensorized gaussian loss (= half the biased MMD²), when installed."""
    geomloss = pytest.importorskip("geomloss")
    x, y = make_data(n, n, d, np.float32)
    sigma = SIGMA[d]
    loss = geomloss.SamplesLoss("gaussian", blur=sigma, backend="tensorized")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    fn = lambda: 2.0 * float(loss(xt, yt))  # noqa: E731
    ours = simgap.mmd2(x, y, bandwidth=sigma, estimator="biased")
    assert abs(fn() - ours) <= 2e-4, (fn(), ours)
    _info(benchmark, impl="geomloss_tensorized", n=n, m=n, d=d, dtype="float32")
    benchmark.pedantic(fn, rounds=3, iterations=1)


@pytest.mark.parametrize("n,d", [(10_000, 512), (10_000, 64)], ids=lambda v: str(v))
def test_sgemm_floor(benchmark, n, d):
    """NumPy's x @ y.T for the same sizes: the multiply under every kernel."""
    x, y = make_data(n, n, d, np.float32)
    _info(benchmark, impl="numpy_sgemm", n=n, m=n, d=d, dtype="float32")
    benchmark.pedantic(lambda: x @ y.T, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("n,d,L", SW_CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("impl", ["simgap", "torch_naive"])
def test_sliced_wasserstein_f32(benchmark, impl, n, d, L):
    x, y = make_data(n, n, d, np.float32)
    theta = simgap.random_projections(d, L, seed=0)
    ref = sw_reference(x[:20_000], y[:20_000], theta[:, :64])
    chk = simgap.sliced_wasserstein(x[:20_000], y[:20_000], projections=theta[:, :64])
    assert abs(chk - ref) <= 1e-4 * ref, (chk, ref)
    if impl == "simgap":
        fn = lambda: simgap.sliced_wasserstein(x, y, projections=theta)  # noqa: E731
    else:
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        tt = torch.from_numpy(theta.astype(np.float32))
        fn = lambda: torch_naive_sw(xt, yt, tt)  # noqa: E731
    got = fn()
    _info(benchmark, impl=impl, n=n, m=n, d=d, L=L, dtype="float32", sw=got)
    benchmark.pedantic(fn, rounds=3, iterations=1)
