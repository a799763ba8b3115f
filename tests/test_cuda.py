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


def _bw(kernel, d):
    # Scaled with d so that float32 gaussian values do not underflow at d = 513.
    return 1.7 * np.sqrt(d) if kernel in ("gaussian", "laplacian", "imq") else "median"


def _ref_bw(kernel, d):
    return 1.7 * np.sqrt(d) if kernel in ("gaussian", "laplacian", "imq") else None


def _cuda(a):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_matrix_cuda(rng, kernel, n, m, d, dtype):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 0.3).astype(dtype)
    got = simgap.kernel_matrix(_cuda(x), _cuda(y), kernel=kernel, bandwidth=_bw(kernel, x.shape[1]))
    assert got.is_cuda and got.dtype == (torch.float32 if dtype == np.float32 else torch.float64)
    ref = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]))
    np.testing.assert_allclose(got.cpu().numpy(), ref, **kernel_tol(dtype, ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", SIZES)
@pytest.mark.parametrize("q", [1, 5])
@pytest.mark.parametrize("kernel", ["gaussian", "energy", "polynomial"])
def test_kernel_contract_cuda(rng, kernel, n, m, d, q, dtype):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 0.3).astype(dtype)
    w = rng.normal(size=(m, q)).astype(dtype)
    got = simgap.kernel_contract(_cuda(x), _cuda(y), _cuda(w), kernel=kernel, bandwidth=_bw(kernel, x.shape[1]))
    assert got.is_cuda and got.dtype == torch.float64
    K = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]))
    ref = K @ w.astype(np.float64)
    np.testing.assert_allclose(got.cpu().numpy(), ref, **kernel_tol(dtype, ref))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd2_cuda_matches_cpu_and_reference(rng, kernel, estimator, dtype):
    x = rng.normal(size=(700, 16)).astype(dtype)
    y = (rng.normal(size=(513, 16)) + 0.5).astype(dtype)
    got = simgap.mmd2(_cuda(x), _cuda(y), kernel=kernel, bandwidth=_bw(kernel, x.shape[1]), estimator=estimator)
    assert isinstance(got, float)
    cpu = simgap.mmd2(x, y, kernel=kernel, bandwidth=_bw(kernel, x.shape[1]), estimator=estimator)
    ref = ref_impl.mmd2(x, y, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]), estimator=estimator)
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


@pytest.mark.parametrize("estimator", ["block", "linear", "rff"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_linear_rff_cuda_equal_cpu(rng, estimator, dtype):
    # The same row orders and frequencies as on the CPU for the seed.
    x = rng.normal(size=(2000, 17)).astype(dtype)
    y = (rng.normal(size=(1500, 17)) + 0.2).astype(dtype)
    kw = dict(bandwidth=4.0, estimator=estimator, return_stderr=True, seed=3, block_size=64, n_features=128)
    v, se = simgap.mmd2(_cuda(x), _cuda(y), **kw)
    v_cpu, se_cpu = simgap.mmd2(x, y, **kw)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert v == pytest.approx(v_cpu, rel=tol, abs=tol * 1e-2)
    assert se == pytest.approx(se_cpu, rel=max(tol, 1e-6))


def test_runs_on_the_current_stream(rng):
    x = _cuda(rng.normal(size=(2000, 32)).astype(np.float32))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = simgap.kernel_contract(x, x, torch.ones(2000, device="cuda"), bandwidth=3.0)
    s.synchronize()
    ref = simgap.kernel_contract(x.cpu().numpy(), x.cpu().numpy(), np.ones(2000), bandwidth=3.0)
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-4)


# ---- the GEMM route (cuBLAS Gram tiles + fused epilogue) -------------------------------------

@pytest.fixture
def route(request):
    """Force the fused or the GEMM route for the test, whatever d is."""
    from simgap._ops import dispatch

    old = dispatch.FORCE_ROUTE
    dispatch.FORCE_ROUTE = request.param
    yield request.param
    dispatch.FORCE_ROUTE = old


@pytest.fixture
def small_tiles():
    """GEMM tiles of 64 so that small inputs cross several tiles (and the diagonal)."""
    from simgap._ops import cuda as cuda_ops

    old = cuda_ops.GEMM_TILE
    cuda_ops.GEMM_TILE = 64
    yield
    cuda_ops.GEMM_TILE = old


@pytest.mark.parametrize("route", ["fused", "gemm"], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m,d", [(1, 1, 1), (2, 7, 3), (97, 130, 7), (257, 65, 200)])
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_matrix_both_routes(rng, small_tiles, route, kernel, n, m, d, dtype):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 0.3).astype(dtype)
    got = simgap.kernel_matrix(_cuda(x), _cuda(y), kernel=kernel, bandwidth=_bw(kernel, x.shape[1]))
    ref = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]))
    np.testing.assert_allclose(got.cpu().numpy(), ref, **kernel_tol(dtype, ref))
    same = simgap.kernel_matrix(_cuda(x), kernel=kernel, bandwidth=_bw(kernel, x.shape[1])).cpu().numpy()
    ref_same = ref_impl.kernel_matrix(x, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]))
    np.testing.assert_allclose(same, ref_same, **kernel_tol(dtype, ref_same))


@pytest.mark.parametrize("route", ["fused", "gemm"], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", [1, 8, 9, 20])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "energy", "polynomial"])
def test_kernel_contract_both_routes(rng, small_tiles, route, kernel, q, dtype):
    x = rng.normal(size=(150, 33)).astype(dtype)
    y = (rng.normal(size=(131, 33)) + 0.3).astype(dtype)
    w = rng.normal(size=(131, q)).astype(dtype)
    got = simgap.kernel_contract(_cuda(x), _cuda(y), _cuda(w), kernel=kernel, bandwidth=_bw(kernel, x.shape[1]))
    K = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]))
    ref = K @ w.astype(np.float64)
    np.testing.assert_allclose(got.cpu().numpy(), ref, **kernel_tol(dtype, ref))


@pytest.mark.parametrize("route", ["fused", "gemm"], indirect=True)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd2_both_routes_symmetric_tiles(rng, small_tiles, route, kernel, estimator, dtype):
    # 4097 and 200 rows cross 64-row tiles unevenly; the self terms use only upper tiles.
    x = rng.normal(size=(4097, 9)).astype(dtype)
    y = (rng.normal(size=(200, 9)) + 0.5).astype(dtype)
    got = simgap.mmd2(_cuda(x), _cuda(y), kernel=kernel, bandwidth=_bw(kernel, x.shape[1]), estimator=estimator)
    ref = ref_impl.mmd2(x, y, kernel=kernel, bandwidth=_ref_bw(kernel, x.shape[1]), estimator=estimator)
    tol = 1e-4 if dtype == np.float32 else 1e-7
    assert got == pytest.approx(ref, rel=tol, abs=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_wide_takes_gemm_route_and_matches(rng, dtype):
    x = rng.normal(size=(1025, 513)).astype(dtype)
    y = (rng.normal(size=(700, 513)) + 0.05).astype(dtype)
    got = simgap.mmd2(_cuda(x), _cuda(y), bandwidth=20.0)
    ref = ref_impl.mmd2(x, y, bandwidth=20.0, estimator="unbiased")
    tol = 1e-4 if dtype == np.float32 else 1e-7
    assert got == pytest.approx(ref, rel=tol, abs=tol)


def test_near_duplicates_root_kernels_gemm_route(rng, small_tiles):
    # Pairs 1e-4 apart at norm ~30: the Gram identity alone loses every digit of the distance.
    x = (rng.normal(size=(300, 256)) * 2 + 30).astype(np.float32)
    y = (x + 1e-4 * rng.normal(size=x.shape)).astype(np.float32)
    for kernel in ("laplacian", "energy"):
        bw = 1.0 if kernel == "laplacian" else "median"  # energy has no bandwidth
        got = simgap.kernel_matrix(_cuda(x), _cuda(y), kernel=kernel, bandwidth=bw).cpu().numpy()
        ref = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=1.0 if kernel == "laplacian" else None)
        np.testing.assert_allclose(np.diag(got), np.diag(ref), rtol=1e-3, atol=1e-6)


# ---- tensor-core precisions -------------------------------------------------------------------

@pytest.mark.parametrize("precision,tol", [("tf32", 1e-3), ("bf16", 1e-2)])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "imq", "energy"])
def test_reduced_precision_error(rng, precision, tol, kernel):
    x = rng.normal(size=(2000, 256)).astype(np.float32)
    y = (rng.normal(size=(1500, 256)) + 0.1).astype(np.float32)
    bw = 16.0 if kernel != "energy" else "median"
    got = simgap.mmd2(_cuda(x), _cuda(y), kernel=kernel, bandwidth=bw, precision=precision)
    ref = ref_impl.mmd2(x, y, kernel=kernel, bandwidth=None if bw == "median" else bw, estimator="unbiased")
    assert abs(got - ref) <= tol * abs(ref), (got, ref)
    K = simgap.kernel_matrix(_cuda(x[:300]), _cuda(y[:300]), kernel=kernel, bandwidth=bw,
                             precision=precision).cpu().numpy()
    Kref = ref_impl.kernel_matrix(x[:300], y[:300], kernel=kernel,
                                  bandwidth=None if bw == "median" else bw)
    assert np.max(np.abs(K - Kref)) <= tol * np.max(np.abs(Kref))


TC_SIZES = [(1, 1, 1), (2, 7, 3), (97, 65, 64), (1025, 513, 100), (4097, 130, 7)]


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("n,m,d", TC_SIZES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_fused_tensor_core_route_matches_gemm_route(rng, precision, kernel, n, m, d):
    """The WMMA kernel (contract_tc.cu) against the GEMM route at the same precision:
    the same rounded operands and norms, fp32 accumulation in another order."""
    from simgap._ops import dispatch

    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.normal(size=(m, d)) + 0.2).astype(np.float32)
    w = rng.normal(size=(m, 3))
    bw = 1.5 * np.sqrt(d) if kernel in ("gaussian", "laplacian", "imq") else "median"
    kw = dict(kernel=kernel, bandwidth=bw, precision=precision)
    old = dispatch.FORCE_ROUTE
    try:
        dispatch.FORCE_ROUTE = "gemm"
        ref_c = simgap.kernel_contract(_cuda(x), _cuda(y), _cuda(w), **kw).cpu().numpy()
        ref_m = simgap.mmd2(_cuda(x), _cuda(y), estimator="biased", **kw)
        dispatch.FORCE_ROUTE = "fused_tc"
        got_c = simgap.kernel_contract(_cuda(x), _cuda(y), _cuda(w), **kw)
        got_m = simgap.mmd2(_cuda(x), _cuda(y), estimator="biased", **kw)
    finally:
        dispatch.FORCE_ROUTE = old
    assert got_c.is_cuda and got_c.dtype == torch.float64
    scale = np.abs(ref_c).max() + 1e-30
    np.testing.assert_allclose(got_c.cpu().numpy(), ref_c, rtol=1e-4, atol=1e-4 * scale)
    assert got_m == pytest.approx(ref_m, rel=1e-3, abs=1e-4 * max(abs(ref_m), 1e-3))


@pytest.mark.parametrize("precision,tol", [("tf32", 1e-3), ("bf16", 1e-2)])
def test_fused_tensor_core_route_error(rng, precision, tol):
    """The documented error of the reduced precisions, on the fused tensor-core route."""
    from simgap._ops import dispatch

    x = rng.normal(size=(3000, 48)).astype(np.float32)
    y = (rng.normal(size=(2500, 48)) + 0.1).astype(np.float32)
    old = dispatch.FORCE_ROUTE
    try:
        dispatch.FORCE_ROUTE = "fused_tc"
        got = simgap.mmd2(_cuda(x), _cuda(y), bandwidth=7.0, precision=precision)
    finally:
        dispatch.FORCE_ROUTE = old
    ref = ref_impl.mmd2(x, y, bandwidth=7.0, estimator="unbiased")
    assert abs(got - ref) <= tol * abs(ref), (got, ref)


def test_precision_is_checked(rng):
    x = _cuda(rng.normal(size=(20, 3)))
    with pytest.raises(ValueError, match="precision"):
        simgap.mmd2(x, x, precision="fp8")


def test_highest_ignores_the_global_tf32_switch(rng):
    x = _cuda(rng.normal(size=(600, 300)).astype(np.float32))
    y = _cuda(rng.normal(size=(500, 300)).astype(np.float32) + 0.1)
    mm = torch.backends.cuda.matmul
    old = mm.fp32_precision
    try:
        mm.fp32_precision = "tf32"
        got = simgap.mmd2(x, y, bandwidth=15.0)
    finally:
        mm.fp32_precision = old
    assert mm.fp32_precision == old
    ref = ref_impl.mmd2(x.cpu().numpy(), y.cpu().numpy(), bandwidth=15.0, estimator="unbiased")
    assert got == pytest.approx(ref, rel=1e-4, abs=1e-6)


# ---- mmd2_batch and mmd_test --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_mmd2_batch_cuda_equals_cpu(rng, dtype):
    x = rng.normal(size=(400, 12)).astype(dtype)
    ys = [(rng.normal(size=(m, 12)) + s).astype(dtype) for m, s in ((300, 0.0), (7, 0.4), (513, 1.0))]
    got = simgap.mmd2_batch(_cuda(x), [_cuda(y) for y in ys])
    cpu = simgap.mmd2_batch(x, ys)
    assert isinstance(got, np.ndarray) and got.shape == (3,)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, cpu, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="different devices"):
        simgap.mmd2_batch(_cuda(x), [ys[0]])


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("n_permutations", [5, 300])
def test_mmd_test_cuda_equals_cpu(rng, estimator, n_permutations):
    x = rng.normal(size=(150, 6))
    y = rng.normal(size=(131, 6)) + 0.2
    got = simgap.mmd_test(_cuda(x), _cuda(y), n_permutations, estimator=estimator, seed=3)
    cpu = simgap.mmd_test(x, y, n_permutations, estimator=estimator, seed=3)
    assert got.statistic == pytest.approx(cpu.statistic, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(got.null_distribution, cpu.null_distribution, rtol=1e-9, atol=1e-12)
    assert got.p_value == cpu.p_value


# ---- sliced Wasserstein (cuBLAS projection, CUB sort, exact 1-D distances) ---------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [1, 2, 3.5])
@pytest.mark.parametrize("n,m,d", [(1, 1, 1), (2, 7, 3), (97, 97, 64), (1025, 333, 5), (70000, 70000, 8),
                                   (70001, 4097, 3)])
def test_sliced_wasserstein_cuda(rng, n, m, d, p, dtype):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) * 1.3 + 0.2).astype(dtype)
    L = 16
    got, per = simgap.sliced_wasserstein(_cuda(x), _cuda(y), n_projections=L, p=p, seed=4,
                                         return_per_projection=True)
    assert per.is_cuda and per.dtype == torch.float64 and per.shape == (L,)
    ref = ref_impl.sliced_wasserstein(x, y, n_projections=L, p=p, seed=4)
    tol = 1e-4 if dtype == np.float32 else 1e-7
    assert got == pytest.approx(ref, rel=tol, abs=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sliced_wasserstein_cuda_weighted(rng, dtype):
    x = rng.normal(size=(500, 4)).astype(dtype)
    y = (rng.normal(size=(301, 4)) + 0.5).astype(dtype)
    a, b = rng.random(500), rng.random(301)
    b[:50] = 0.0
    got = simgap.sliced_wasserstein(_cuda(x), _cuda(y), n_projections=32, seed=1, x_weights=_cuda(a),
                                    y_weights=_cuda(b))
    ref = ref_impl.sliced_wasserstein(x, y, n_projections=32, seed=1, x_weights=a, y_weights=b)
    tol = 1e-4 if dtype == np.float32 else 1e-7
    assert got == pytest.approx(ref, rel=tol, abs=tol)


def test_sliced_wasserstein_cuda_chunks_directions(rng, monkeypatch):
    from simgap._ops import cuda as cuda_ops

    monkeypatch.setattr(cuda_ops, "SLICED_CHUNK_BYTES", 1)  # one direction per chunk
    x, y = rng.normal(size=(300, 6)), rng.normal(size=(200, 6)) + 0.3
    theta = rng.normal(size=(6, 10))
    theta /= np.linalg.norm(theta, axis=0)
    got = simgap.sliced_wasserstein(_cuda(x), _cuda(y), projections=_cuda(theta))
    assert got == pytest.approx(simgap.sliced_wasserstein(x, y, projections=theta), rel=1e-10)


# ---- neighbour metrics and the Frechet distance -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 5])
def test_nearest_neighbors_cuda(rng, k, dtype):
    x = rng.normal(size=(4097, 33)).astype(dtype)
    y = rng.normal(size=(1025, 33)).astype(dtype)
    for args in ((x,), (x, y)):
        d_cpu, i_cpu = simgap.nearest_neighbors(*args, k=k)
        d_gpu, i_gpu = simgap.nearest_neighbors(*(_cuda(a) for a in args), k=k)
        assert d_gpu.is_cuda and i_gpu.dtype == torch.int64
        np.testing.assert_array_equal(i_gpu.cpu().numpy(), i_cpu)
        # both devices return the exact distances with the same arithmetic (fma in feature order)
        np.testing.assert_array_equal(d_gpu.cpu().numpy(), d_cpu)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prdc_realism_frechet_cuda(rng, dtype):
    real = rng.normal(size=(3000, 16)).astype(dtype)
    fake = (rng.normal(size=(2500, 16)) * 1.1 + 0.1).astype(dtype)
    assert simgap.prdc(_cuda(real), _cuda(fake)) == pytest.approx(simgap.prdc(real, fake), abs=1e-12)
    r_gpu = simgap.realism_score(_cuda(real), _cuda(fake)).cpu().numpy()
    np.testing.assert_allclose(r_gpu, simgap.realism_score(real, fake), rtol=1e-4)
    assert simgap.frechet_distance(_cuda(real), _cuda(fake)) == pytest.approx(
        simgap.frechet_distance(real, fake), rel=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d", [(7, 1), (4097, 5), (3000, 200)])
def test_prdc_ties_on_ball_boundaries_cuda(rng, dtype, n, d):
    # A set against itself: each k-th neighbour lies exactly on a ball's
    # boundary (outside), so density is exactly 1; with copied samples the GPU
    # gives exactly the CPU's counts.
    x = (rng.normal(size=(n, d)) * 3 + 7).astype(dtype)
    k = min(5, n - 1)
    assert simgap.prdc(_cuda(x), _cuda(x), k=k) == {"precision": 1.0, "recall": 1.0, "density": 1.0,
                                                      "coverage": 1.0}
    fake = np.vstack([rng.normal(size=(n, d)) * 3 + 7.5, x[: max(1, n // 4)]]).astype(dtype)
    assert simgap.prdc(_cuda(x), _cuda(fake), k=k) == simgap.prdc(x, fake, k=k)
    r_gpu = simgap.realism_score(_cuda(x), _cuda(fake), k=k).cpu().numpy()
    np.testing.assert_array_equal(np.isinf(r_gpu), np.isinf(simgap.realism_score(x, fake, k=k)))


@pytest.mark.parametrize("d", [9, 200])
def test_per_bandwidth_and_stderr_cuda(rng, d):
    x = rng.normal(size=(700, d))
    y = rng.normal(size=(513, d)) + 0.3
    bws = [0.5 * np.sqrt(d), np.sqrt(d), 3 * np.sqrt(d)]
    got = simgap.mmd2(_cuda(x), _cuda(y), bandwidth=bws, per_bandwidth=True)
    np.testing.assert_allclose(got, simgap.mmd2(x, y, bandwidth=bws, per_bandwidth=True), rtol=1e-9)
    v, se = simgap.mmd2(_cuda(x), _cuda(y), bandwidth=bws[1], return_stderr=True)
    v_cpu, se_cpu = simgap.mmd2(x, y, bandwidth=bws[1], return_stderr=True)
    assert v == pytest.approx(v_cpu, rel=1e-9) and se == pytest.approx(se_cpu, rel=1e-7)


# ---- compare() and simgap.distributed with CUDA tensors -----------------------------------------

def test_compare_cuda_matches_cpu(rng):
    x = rng.normal(size=(600, 12))
    y = rng.normal(size=(500, 12)) * 1.1 + 0.2
    kw = dict(n_permutations=100, n_bootstrap=30, seed=1, map_method="pca")
    cpu = simgap.compare(x, y, **kw)
    gpu = simgap.compare(_cuda(x), _cuda(y), **kw)
    assert gpu.settings["device"].startswith("cuda")
    for key in ("mmd2", "p_value", "swd", "fd"):
        assert getattr(gpu, key) == pytest.approx(getattr(cpu, key), rel=1e-7, abs=1e-12), key
    assert gpu.prdc == pytest.approx(cpu.prdc, abs=1e-12)
    np.testing.assert_allclose(gpu.synthetic_scores["witness"], cpu.synthetic_scores["witness"], rtol=1e-7,
                               atol=1e-12)


def test_distributed_accepts_cuda_shards(rng, tmp_path):
    import torch.distributed as dist

    from simgap import distributed as sd

    x, y = rng.normal(size=(300, 5)), rng.normal(size=(200, 5)) + 0.3
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        got = sd.mmd2(_cuda(x), _cuda(y), bandwidth=1.5)
        swd = sd.sliced_wasserstein(_cuda(x), _cuda(y), seed=2)
    finally:
        dist.destroy_process_group()
    assert got == pytest.approx(simgap.mmd2(x, y, bandwidth=1.5), rel=1e-9)
    assert swd == pytest.approx(simgap.sliced_wasserstein(x, y, seed=2), rel=1e-9)


def test_recommend_cuda_matches_cpu(rng):
    shift = rng.uniform(-2, 2, size=400)
    syn = rng.normal(size=(400, 4)) + shift[:, None]
    real = rng.normal(size=(300, 4)) + 0.7
    cpu = simgap.recommend(real, syn, {"shift": shift}, seed=0)
    gpu = simgap.recommend(_cuda(real), _cuda(syn), {"shift": shift}, seed=0)
    np.testing.assert_allclose(gpu.weights, cpu.weights, rtol=1e-6, atol=1e-12)
    assert gpu.parameters["shift"].value == pytest.approx(cpu.parameters["shift"].value, rel=1e-6)


def test_sim_optimizer_scores_cuda_latents(rng):
    pytest.importorskip("optuna")
    real = rng.normal(0.7, 1.0, size=(300, 3))
    sets = [rng.normal(s, 1.0, size=(200, 3)) for s in (-1.0, 0.5)]
    configs = [{"shift": -1.0}, {"shift": 0.5}]
    cpu = simgap.SimOptimizer({"shift": (-2.0, 2.0)}, real, seed=0, study_name="cpu").tell(configs, sets)
    opt = simgap.SimOptimizer({"shift": (-2.0, 2.0)}, _cuda(real), seed=0, study_name="gpu")
    np.testing.assert_allclose(opt.tell(configs, [_cuda(s) for s in sets]), cpu, rtol=1e-9)


@pytest.mark.parametrize("scale", [1e-20, 1e20])
def test_float32_at_extreme_magnitudes_is_computed_in_float64_on_the_gpu(rng, scale):
    x = (rng.normal(size=(300, 8)) * scale).astype(np.float32)
    y = ((rng.normal(size=(200, 8)) + 0.3) * scale).astype(np.float32)
    want = simgap.mmd2(x.astype(np.float64) / scale, y.astype(np.float64) / scale)
    assert simgap.mmd2(_cuda(x), _cuda(y)) == pytest.approx(want, rel=1e-9)
    assert simgap.prdc(_cuda(x), _cuda(y), k=4) == simgap.prdc(x, y, k=4)
