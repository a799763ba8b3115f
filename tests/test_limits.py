"""Arguments whose memory, scale or order the statistics cannot hold are refused
clearly (issue 18, items 7 and 8; items 2 and 3 are in test_sliced.py and
test_kernels.py): ValueError naming the argument, or a correct value, never a
raw MemoryError, OverflowError, ZeroDivisionError, inf or NaN."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import simgap
from simgap._ops.inputs import memory_limit


def _xy(n=40, m=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(0.5, 1.0, size=(m, d))


# ---- item 8: memory checked up front ---------------------------------------------------------------

@pytest.mark.parametrize(
    "call, name",
    [
        (lambda x, y: simgap.mmd_test(x, y, n_permutations=10**12), "n_permutations"),
        (lambda x, y: simgap.sliced_wasserstein(x, y, n_projections=10**12), "n_projections"),
        (lambda x, y: simgap.random_projections(3, 10**12), "n_projections"),
        (lambda x, y: simgap.mmd2(x, y, estimator="rff", n_features=10**9), "n_features"),
    ],
    ids=["mmd_test", "sliced_wasserstein", "random_projections", "mmd2_rff"],
)
def test_huge_allocations_are_refused_naming_the_argument(call, name):
    x, y = _xy()
    with pytest.raises(ValueError, match=rf"{name}=\d+ needs about [\d,.]+ GiB"):
        call(x, y)


def test_memory_limit_is_the_physical_memory():
    limit = memory_limit()
    assert limit > 0
    try:
        assert limit == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        pass


def test_distributed_refuses_huge_allocations(tmp_path):
    import torch.distributed as dist

    import simgap.distributed as sd

    if dist.is_initialized():  # pragma: no cover
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        x, y = _xy()
        calls = [
            (lambda: sd.mmd_test(x, y, n_permutations=10**12), "n_permutations"),
            (lambda: sd.sliced_wasserstein(x, y, n_projections=10**12), "n_projections"),
            (lambda: sd.mmd2(x, y, estimator="rff", n_features=10**9), "n_features"),
        ]
        for call, name in calls:
            with pytest.raises(ValueError, match=rf"{name}=\d+ needs about [\d,.]+ GiB"):
                call()
    finally:
        dist.destroy_process_group()


# ---- item 7: huge and tiny bandwidths ---------------------------------------------------------------

_BANDWIDTH_CALLS = {
    "mmd2": lambda x, y, k, bw: simgap.mmd2(x, y, kernel=k, bandwidth=bw),
    "kernel_matrix": lambda x, y, k, bw: simgap.kernel_matrix(x, y, kernel=k, bandwidth=bw),
    "kernel_contract": lambda x, y, k, bw: simgap.kernel_contract(x, y, np.full(len(y), 1.0 / len(y)), kernel=k,
                                                                  bandwidth=bw),
    "mmd_test": lambda x, y, k, bw: simgap.mmd_test(x, y, kernel=k, bandwidth=bw, n_permutations=20).statistic,
}


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("bandwidth", [1e300, 1e200, 1e160, 1e-160, 1e-300])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq"])
@pytest.mark.parametrize("call", sorted(_BANDWIDTH_CALLS))
def test_extreme_bandwidths_give_a_value_or_name_bandwidth(call, kernel, bandwidth, kind):
    x, y = _xy()
    if kind == "torch":
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    try:
        out = _BANDWIDTH_CALLS[call](x, y, kernel, bandwidth)
    except ValueError as exc:
        assert "bandwidth" in str(exc)
        return
    out = np.asarray(out)
    assert np.all(np.isfinite(out))
    if bandwidth > 1e100:  # unit-scale data: every kernel value is 1 in float64
        if call == "kernel_matrix":
            assert np.all(out == 1.0)
        elif call in ("mmd2", "mmd_test"):
            assert abs(float(out)) < 1e-12


@pytest.mark.parametrize("kernel", ["gaussian", "imq"])
def test_bandwidth_whose_scale_underflows_is_refused_for_data_at_its_scale(kernel):
    x, y = _xy()
    # 1 / sigma^2 underflows float64, but the distances are not negligible against sigma.
    with pytest.raises(ValueError, match="bandwidth 1e\\+155 is too large"):
        simgap.kernel_matrix(x * 1e150, y * 1e150, kernel=kernel, bandwidth=1e155)
