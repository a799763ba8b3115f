"""The CUDA path against the float64 references: CUDA tensors in, CUDA tensors
or floats out.  Skipped as a whole where there is no GPU or no CUDA build."""

from __future__ import annotations

import numpy as np
import pytest

import simgap
import _reference as ref_impl
from conftest import HAS_CUDA, kernel_tol

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU and a simgap build with CUDA"),
]

KERNELS = ["gaussian", "laplacian", "imq", "polynomial", "linear", "energy"]
SIZES = [(1, 1, 1), (2, 7, 3), (97, 65, 64), (1025, 513, 513), (4097, 130, 7)]
DTYPES = [np.float32, np.float64]


def _bw(kernel):
    return 1.7 if kernel in ("gaussian", "laplacian", "imq") else "median"


def _ref_bw(kernel):
    return 1.7 if kernel in ("gaussian", "laplacian", "imq") else None


def _cuda(a):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_matrix_cuda(rng, kernel, n, m, d, dtype):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 0.3).astype(dtype)
    got = simgap.kernel_matrix(_cuda(x), _cuda(y), kernel=kernel, bandwidth=_bw(kernel))
    assert got.is_cuda and got.dtype == (torch.float32 if dtype == np.float32 else torch.float64)
    ref = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=_ref_bw(kernel))
    np.testing.assert_allclose(got.cpu().numpy(), ref, **kernel_tol(dtype, ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("q", [1, 5])
@pytest.mark.parametrize("kernel", ["gaussian", "energy", "polynomial"])
def test_kernel_contract_cuda(rng, kernel, n, m, d, q, dtype):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 0.3).astype(dtype)
    w = rng.normal(size=(m, q)).astype(dtype)
    got = simgap.kernel_contract(_cuda(x), _cuda(y), _cuda(w), kernel=kernel, bandwidth=_bw(kernel))
    assert got.is_cuda and got.dtype == torch.float64
    K = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=_ref_bw(kernel))
    ref = K @ w.astype(np.float64)
    np.testing.assert_allclose(got.cpu().numpy(), ref, **kernel_tol(dtype, ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd2_cuda_matches_cpu_and_reference(rng, kernel, estimator, dtype):
    x = rng.normal(size=(700, 16)).astype(dtype)
    y = (rng.normal(size=(513, 16)) + 0.5).astype(dtype)
    got = simgap.mmd2(_cuda(x), _cuda(y), kernel=kernel, bandwidth=_bw(kernel), estimator=estimator)
    assert isinstance(got, float)
    cpu = simgap.mmd2(x, y, kernel=kernel, bandwidth=_bw(kernel), estimator=estimator)
    ref = ref_impl.mmd2(x, y, kernel=kernel, bandwidth=_ref_bw(kernel), estimator=estimator)
    tol = 1e-4 if dtype == np.float32 else 1e-7
    assert got == pytest.approx(ref, rel=tol, abs=tol)
    assert got == pytest.approx(cpu, rel=tol, abs=tol)


def test_median_bandwidth_cuda_equals_cpu(rng):
    x, y = rng.normal(size=(3000, 8)), rng.normal(size=(1000, 8))
    assert simgap.median_bandwidth(_cuda(x), _cuda(y)) == pytest.approx(simgap.median_bandwidth(x, y), rel=1e-12)


def test_weighted_mmd2_cuda(rng):
    x, y = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) + 0.2
    a, b = rng.random(300), rng.random(200)
    got = simgap.mmd2(_cuda(x), _cuda(y), x_weights=_cuda(a), y_weights=_cuda(b), bandwidth=2.0)
    assert got == pytest.approx(simgap.mmd2(x, y, x_weights=a, y_weights=b, bandwidth=2.0), rel=1e-9)


def test_mixed_devices_raise(rng):
    x = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="different devices"):
        simgap.mmd2(_cuda(x), x)


def test_unsupported_cuda_paths_say_so(rng):
    x = _cuda(rng.normal(size=(50, 3)))
    with pytest.raises(NotImplementedError, match="CUDA"):
        simgap.sliced_wasserstein(x, x)
    with pytest.raises(NotImplementedError, match="CUDA"):
        simgap.mmd2(x, x, estimator="block")


def test_runs_on_the_current_stream(rng):
    x = _cuda(rng.normal(size=(2000, 32)).astype(np.float32))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = simgap.kernel_contract(x, x, torch.ones(2000, device="cuda"), bandwidth=3.0)
    s.synchronize()
    ref = simgap.kernel_contract(x.cpu().numpy(), x.cpu().numpy(), np.ones(2000), bandwidth=3.0)
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-4)
