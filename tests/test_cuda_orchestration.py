"""The CUDA path's Python orchestration, run on the CPU with a stand-in for
``simgap._cuda``.

The stand-in implements every launcher of the CUDA module with the same
arguments (keyword-only where the binding's are, so that a positional call
fails here as on a GPU) and the documented semantics, in float64 NumPy on the
host memory behind CPU tensors' ``data_ptr()``.  What this checks is everything around
the kernels: the tiling of the GEMM route (offsets, ragged last tiles,
symmetric upper tiles of the self terms, the global diagonal), the routing
rule, the tensor-core roundings, mmd2_batch, the CUDA branch of mmd_test
(relabellings, batches, statistics on the device) and the chunking of sliced
Wasserstein.  The kernels themselves are checked on a GPU by test_cuda.py.

:func:`install_stand_in` puts the stand-in where the CUDA module is held
(``simgap._ops.backend.CUDA``) and makes the one reading of a tensor's device
(``simgap._ops.inputs.tensor_device``) call every tensor a CUDA one, so that
every public function sends torch tensors down its CUDA branch.
"""

from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest

import _reference as ref_impl
import simgap
from simgap import _C
from simgap._estimators import median_heuristic
from simgap._ops import backend, cuda_routes, dispatch, inputs
from simgap._ops import cuda as cuda_ops
from simgap._ops.spec import resolve_kernel

torch = pytest.importorskip("torch")

KERNELS = ["gaussian", "laplacian", "imq", "polynomial", "linear", "energy"]
_NAMES = {code: name for name, code in _C.kernel_types.items()}


def _view(ptr, shape, is_double):
    ctype = ctypes.c_double if is_double else ctypes.c_float
    count = int(np.prod(shape))
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctype)), shape=(count,)).reshape(shape)


def _k(name, scales, gamma, coef0, degree, d2, g):
    d2 = np.maximum(d2, 0.0)
    if name == "gaussian":
        return sum(np.exp(-d2 * s) for s in scales)
    if name == "laplacian":
        return np.exp(-np.sqrt(d2) * scales[0])
    if name == "imq":
        return 1.0 / np.sqrt(1.0 + d2 * scales[0])
    if name == "polynomial":
        return (gamma * g + coef0) ** degree
    if name == "linear":
        return g
    return -np.sqrt(d2)


def _tile_values(gram, ld, rows, cols, row0, col0, xn, yn, d, is_double, kernel, scales, gamma, coef0,
                 degree, same, exclude):
    G = _view(gram, (rows, ld), is_double)[:, :cols].astype(np.float64)
    Xn = _view(xn, (row0 + rows,), True)[row0:]
    Yn = _view(yn, (col0 + cols,), True)[col0:]
    K = _k(_NAMES[kernel], scales, gamma, coef0, degree, Xn[:, None] + Yn[None, :] - 2 * G, G)
    if same:
        i = np.arange(row0, row0 + rows)[:, None]
        j = np.arange(col0, col0 + cols)[None, :]
        diag = i == j
        if exclude:
            K[diag] = 0.0
        elif _NAMES[kernel] not in ("polynomial", "linear"):
            K[diag] = _k(_NAMES[kernel], scales, gamma, coef0, degree, np.zeros(1), np.zeros(1))[0]
    return K


def _fused_values(x, n, y, m, d, xn, yn, center, is_double, kernel, scales, gamma, coef0, degree, same):
    X = _view(x, (n, d), is_double).astype(np.float64)
    Y = _view(y, (m, d), is_double).astype(np.float64)
    if center:
        c = _view(center, (d,), True)
        X, Y = X - c, Y - c
    Xn, Yn = _view(xn, (n,), True), _view(yn, (m,), True)
    Xn[:] = (X**2).sum(1)
    Yn[:] = (Y**2).sum(1)
    G = X @ Y.T
    K = _k(_NAMES[kernel], scales, gamma, coef0, degree, Xn[:, None] + Yn[None, :] - 2 * G, G)
    if same and _NAMES[kernel] not in ("polynomial", "linear"):
        np.fill_diagonal(K, _k(_NAMES[kernel], scales, gamma, coef0, degree, np.zeros(1), np.zeros(1))[0])
    return K


def _exact_d2(A, B):
    """Row-wise squared distances in float64, summed in feature order: the one
    arithmetic the stand-in's gram_radius and candidate_distances share, as the
    kernels share tile::exact_d2."""
    s = np.zeros(A.shape[0])
    for k in range(A.shape[1]):
        t = A[:, k].astype(np.float64) - B[:, k].astype(np.float64)
        s = s + t * t
    return s


def _make_fake():
    fake = types.SimpleNamespace(gram_contract_max_columns=8, calls=[])

    def row_norms(*, x, n, d, out, is_double, device, stream):
        fake.calls.append("row_norms")
        _view(out, (n,), True)[:] = (_view(x, (n, d), is_double).astype(np.float64) ** 2).sum(1)

    def gram_contract(*, gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, w, q, out, is_double, kernel, scales,
                      gamma, coef0, degree, same, exclude, device, stream):
        fake.calls.append("gram_contract")
        assert 1 <= q <= 8 and ld >= cols
        K = _tile_values(gram, ld, rows, cols, row0, col0, xn, yn, d, is_double, kernel, scales, gamma, coef0,
                         degree, same, exclude)
        W = _view(w, (col0 + cols, q), is_double)[col0:].astype(np.float64)
        _view(out, (row0 + rows, q), True)[row0:] += K @ W

    def gram_kernel_values(*, gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, out, ld_out, is_double,
                           out_double, kernel, scales, gamma, coef0, degree, same, exclude, device, stream):
        fake.calls.append("gram_kernel_values")
        K = _tile_values(gram, ld, rows, cols, row0, col0, xn, yn, d, is_double, kernel, scales, gamma, coef0,
                         degree, same, exclude)
        _view(out, (rows, ld_out), out_double)[:, :cols] = K

    def kernel_contract(*, x, n, y, m, d, w, q, out, xn, yn, center, is_double, kernel, scales, gamma, coef0,
                        degree, same, exclude, device, stream, upper=0):
        fake.calls.append("kernel_contract")
        K = _fused_values(x, n, y, m, d, xn, yn, center, is_double, kernel, scales, gamma, coef0, degree, same)
        if exclude:
            np.fill_diagonal(K, 0.0)
        W = _view(w, (m, q), is_double).astype(np.float64)
        if not upper:
            _view(out, (n, q), True)[:] += K @ W
            return
        assert same and n == m
        t = np.arange(n) // 64  # the CUDA kernel's 64 x 64 tiles
        on, above = t[:, None] == t[None, :], t[:, None] < t[None, :]
        _view(out, (n, q), True)[:] += np.where(on, K, 0.0) @ W
        _view(upper, (n, q), True)[:] += np.where(above, K, 0.0) @ W

    def contract_tc(*, x, n, y, m, d, bf16, xn, yn, w, q, out, upper, kernel, scales, gamma, coef0, degree,
                    same, exclude, device, stream):
        fake.calls.append("contract_tc")
        assert 1 <= q <= dispatch.TC_MAX_COLUMNS and (not upper or (same and n == m))

        def rows(ptr, k):
            if not bf16:
                return _view(ptr, (k, d), False).astype(np.float64)
            bits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint16)), shape=(k * d,))
            return (bits.astype(np.uint32) << 16).view(np.float32).reshape(k, d).astype(np.float64)

        X, Y = rows(x, n), rows(y, m)
        Xn, Yn = _view(xn, (n,), True), _view(yn, (m,), True)
        np.testing.assert_allclose(Xn, (X**2).sum(1), rtol=1e-12)  # norms of the rounded rows
        G = (X @ Y.T).astype(np.float32).astype(np.float64)  # fp32 accumulation of exact products
        K = _k(_NAMES[kernel], scales, gamma, coef0, degree, Xn[:, None] + Yn[None, :] - 2 * G, G)
        if same:
            diag = np.eye(n, dtype=bool)
            if exclude:
                K[diag] = 0.0
            elif _NAMES[kernel] not in ("polynomial", "linear"):
                K[diag] = _k(_NAMES[kernel], scales, gamma, coef0, degree, np.zeros(1), G[diag][:1])[0]
        W = _view(w, (m, q), False).astype(np.float64)
        if not upper:
            _view(out, (n, q), True)[:] += K @ W
            return
        t = np.arange(n) // 64  # the kernel's 64 x 64 tiles
        on, above = t[:, None] == t[None, :], t[:, None] < t[None, :]
        _view(out, (n, q), True)[:] += np.where(on, K, 0.0) @ W
        _view(upper, (n, q), True)[:] += np.where(above, K, 0.0) @ W

    def kernel_matrix(*, x, n, y, m, d, out, xn, yn, center, is_double, kernel, scales, gamma, coef0, degree,
                      same, device, stream):
        fake.calls.append("kernel_matrix")
        _view(out, (n, m), is_double)[:] = _fused_values(x, n, y, m, d, xn, yn, center, is_double, kernel,
                                                         scales, gamma, coef0, degree, same)

    def sort_rows_temp_bytes(length, rows, is_double, device):
        return 16

    def sort_rows(*, inp, out, length, rows, temp, temp_bytes, is_double, device, stream):
        fake.calls.append("sort_rows")
        _view(out, (rows, length), is_double)[:] = np.sort(_view(inp, (rows, length), is_double), axis=1)

    def wasserstein_1d(*, u, n, cu, v, m, cv, rows, p, out, is_double, device, stream):
        fake.calls.append("wasserstein_1d")
        U, V = _view(u, (rows, n), is_double), _view(v, (rows, m), is_double)
        CU = _view(cu, (rows, n), True) if cu else None
        CV = _view(cv, (rows, m), True) if cv else None
        O = _view(out, (rows,), True)
        for r in range(rows):
            a = None if CU is None else np.diff(np.concatenate([[0.0], CU[r]]))
            b = None if CV is None else np.diff(np.concatenate([[0.0], CV[r]]))
            O[r] += ref_impl.wasserstein_1d_pp(U[r], V[r], a, b, p)

    def gram_radius(*, gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, radii, radii2, band, count, max_ratio,
                    is_double, device, stream):
        # The documented semantics (cuda_ops.h, GramRadiusParams) in float64 NumPy.
        fake.calls.append("gram_radius")
        assert ld >= cols and band >= 0 and x and y
        G = _view(gram, (rows, ld), is_double)[:, :cols].astype(np.float64)
        scale = _view(xn, (row0 + rows,), True)[row0:, None] + _view(yn, (col0 + cols,), True)[None, col0:]
        r = _view(radii, (col0 + cols,), True)[None, col0:]
        r2 = _view(radii2, (col0 + cols,), True)[None, col0:]
        d2 = np.maximum(scale - 2.0 * G, 0.0)
        inside = d2 < r2
        redo = (d2 < scale / 32.0) | (np.abs(d2 - r2) <= band * scale)
        X = _view(x, (row0 + rows, d), is_double)[row0:].astype(np.float64)
        Y = _view(y, (col0 + cols, d), is_double)[col0:].astype(np.float64)
        ii, jj = np.nonzero(redo)
        exact = _exact_d2(X[ii], Y[jj])
        d2[ii, jj] = exact
        inside[ii, jj] = np.sqrt(exact) < r[0, jj]
        valid = np.broadcast_to(r2 >= 0, d2.shape)
        with np.errstate(all="ignore"):
            ratio = np.where(d2 > 0, r2 / np.maximum(d2, np.finfo(np.float64).tiny), np.inf)
        _view(count, (row0 + rows,), True).view(np.int64)[row0:] += (inside & valid).sum(1)
        mr = _view(max_ratio, (row0 + rows,), True)[row0:]
        mr[:] = np.maximum(mr, np.where(valid, ratio, 0.0).max(1))

    def candidate_distances(*, x, row0, rows, y, m, d, cand, c, out, is_double, device, stream):
        fake.calls.append("candidate_distances")
        C = _view(cand, (rows, c), True).view(np.int64)
        X = _view(x, (row0 + rows, d), is_double)[row0:]
        Y = _view(y, (m, d), is_double)
        ok = (C >= 0) & (C < m)
        ii = np.repeat(np.arange(rows), c)
        jj = np.where(ok, C, 0).ravel()
        _view(out, (rows, c), True)[:] = np.where(ok, np.sqrt(_exact_d2(X[ii], Y[jj])).reshape(rows, c), np.inf)

    def kernel_values(*, d2, g, out, n, is_double, kernel, scales, gamma, coef0, degree, device, stream):
        fake.calls.append("kernel_values")
        _view(out, (n,), is_double)[:] = _k(_NAMES[kernel], scales, gamma, coef0, degree,
                                            _view(d2, (n,), is_double), _view(g, (n,), is_double))

    for fn in (kernel_values, row_norms, gram_contract, gram_kernel_values, kernel_contract, kernel_matrix,
               sort_rows_temp_bytes, sort_rows, wasserstein_1d, contract_tc, gram_radius,
               candidate_distances):
        setattr(fake, fn.__name__, fn)
    return fake


def install_stand_in(set_attr=setattr):
    """The stand-in CUDA module, installed with ``set_attr`` (``setattr``, or a
    pytest ``monkeypatch.setattr``): held where the CUDA module is held, every
    torch tensor on "cuda:0" (the one reading of a tensor's device), launches on
    stream 0, small GEMM tiles (small inputs cross several).  Returns the stand-in."""
    f = _make_fake()
    set_attr(backend, "CUDA", f)
    set_attr(inputs, "tensor_device", lambda t: "cuda:0")
    set_attr(cuda_ops, "stream_of", lambda t: (0, 0))
    set_attr(cuda_routes, "_bf16_mm_to_fp32_supported", lambda device: False)
    set_attr(cuda_ops, "GEMM_TILE", 64)
    return f


@pytest.fixture
def fake(monkeypatch):
    """The stand-in CUDA module; public functions send torch tensors down their CUDA branch."""
    return install_stand_in(monkeypatch.setattr)


@pytest.fixture(params=["fused", "gemm"])
def route(request, monkeypatch):
    monkeypatch.setattr(dispatch, "FORCE_ROUTE", request.param)
    return request.param


def _spec_fn(kernel, bw):
    def spec_fn(arrays):
        return resolve_kernel(kernel, bw, None, 1.0, 3, arrays, median_fn=median_heuristic)

    return spec_fn


def _bw(kernel):
    return 1.7 if kernel in ("gaussian", "laplacian", "imq") else "median"


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd2_tiles(fake, route, rng, kernel, estimator, dtype):
    x = rng.normal(size=(300, 5)).astype(dtype)
    y = (rng.normal(size=(131, 5)) + 0.4).astype(dtype)
    got = simgap.mmd2(_t(x), _t(y), kernel=kernel, bandwidth=_bw(kernel), estimator=estimator)
    ref = ref_impl.mmd2(x, y, kernel=kernel, bandwidth=1.7 if _bw(kernel) == 1.7 else None, estimator=estimator)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    assert got == pytest.approx(ref, rel=tol, abs=tol)
    expected = "gram_contract" if route == "gemm" else "kernel_contract"
    assert expected in fake.calls


def test_gemm_route_self_terms_use_upper_tiles_only(fake, monkeypatch, rng):
    monkeypatch.setattr(dispatch, "FORCE_ROUTE", "gemm")
    x, y = rng.normal(size=(300, 4)), rng.normal(size=(70, 4))
    simgap.mmd2(_t(x), _t(y), bandwidth=1.0)
    tiles = lambda k: k * (k + 1) // 2  # noqa: E731
    # x: 5 tiles of 64 -> 15 upper tiles; y: 2 -> 3; cross: 5 x 2.
    assert fake.calls.count("gram_contract") == tiles(5) + tiles(2) + 5 * 2


@pytest.mark.parametrize("weighted", [False, True])
def test_weighted_mmd2_tiles(fake, route, rng, weighted):
    x, y = rng.normal(size=(200, 3)), rng.normal(size=(150, 3)) + 0.3
    a, b = rng.random(200), rng.random(150)
    got = simgap.mmd2(_t(x), _t(y), x_weights=_t(a), y_weights=_t(b), bandwidth=1.5,
                      estimator="unbiased" if weighted else None)
    ref = ref_impl.mmd2(x, y, bandwidth=1.5, x_weights=a, y_weights=b, estimator="unbiased" if weighted else None)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("q", [1, 8, 9, 20])
@pytest.mark.parametrize("kernel", ["gaussian", "energy", "polynomial"])
def test_kernel_contract_tiles(fake, route, rng, kernel, q):
    x, y = rng.normal(size=(150, 6)), rng.normal(size=(131, 6)) + 0.3
    w = rng.normal(size=(131, q))
    spec = _spec_fn(kernel, _bw(kernel))([_t(x), _t(y)])
    center = dispatch.pooled_center([_t(x), _t(y)], spec)
    got = dispatch.kernel_contract(_t(x), _t(y), _t(w), spec, center, False).numpy()
    K = ref_impl.kernel_matrix(x, y, kernel=kernel, bandwidth=spec.bandwidths[0] if spec.uses_distance and
                               kernel != "energy" else None)
    np.testing.assert_allclose(got, K @ w, rtol=1e-9, atol=1e-9 * np.abs(K @ w).max())
    if route == "gemm":
        assert ("gram_kernel_values" in fake.calls) == (q > 8)


@pytest.mark.parametrize("same", [False, True])
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_matrix_gemm_rows(fake, monkeypatch, rng, kernel, same):
    monkeypatch.setattr(dispatch, "FORCE_ROUTE", "gemm")
    x, y = rng.normal(size=(200, 4)).astype(np.float32), rng.normal(size=(90, 4)).astype(np.float32)
    yy = x if same else y
    spec = _spec_fn(kernel, 1.3 if kernel in ("gaussian", "laplacian", "imq") else "median")(
        [_t(x)] if same else [_t(x), _t(y)])
    xs, ys = _t(x), _t(x) if same else _t(y)
    center = dispatch.pooled_center([xs] if same else [xs, ys], spec)
    got = dispatch.kernel_matrix(xs, ys, spec, center, same).numpy()
    assert got.dtype == np.float32
    bw = 1.3 if kernel in ("gaussian", "laplacian", "imq") else None
    ref = ref_impl.kernel_matrix(x, None if same else y, kernel=kernel, bandwidth=bw,
                                 gamma=spec.gamma)
    assert ref.shape == (200, yy.shape[0])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("precision,tol", [("tf32", 1e-3), ("bf16", 1e-2)])
def test_tensor_core_roundings(fake, rng, precision, tol):
    x = rng.normal(size=(300, 64)).astype(np.float32)
    y = (rng.normal(size=(250, 64)) + 0.2).astype(np.float32)
    got = simgap.mmd2(_t(x), _t(y), bandwidth=8.0, precision=precision)
    ref = ref_impl.mmd2(x, y, bandwidth=8.0, estimator="unbiased")
    assert got != ref
    assert abs(got - ref) <= tol * abs(ref)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "energy", "polynomial"])
def test_fused_tensor_core_route_equals_gemm_route(fake, monkeypatch, rng, precision, kernel):
    """The fused tensor-core route gets the GEMM route's rounded operands and norms
    and the same symmetric-tile bookkeeping; per_bandwidth and many columns too."""
    x = rng.normal(size=(150, 20)).astype(np.float32)
    y = (rng.normal(size=(131, 20)) + 0.2).astype(np.float32)
    bw = 4.0 if kernel in ("gaussian", "laplacian") else "median"
    kw = dict(kernel=kernel, bandwidth=bw, precision=precision)
    monkeypatch.setattr(dispatch, "FORCE_ROUTE", "gemm")
    gemm = simgap.mmd2(_t(x), _t(y), **kw)
    w = rng.normal(size=(131, 3))
    gemm_c = simgap.kernel_contract(_t(x), _t(y), _t(w), **kw).numpy()
    monkeypatch.setattr(dispatch, "FORCE_ROUTE", "fused_tc")
    fake.calls.clear()
    tc = simgap.mmd2(_t(x), _t(y), **kw)
    tc_c = simgap.kernel_contract(_t(x), _t(y), _t(w), **kw).numpy()
    assert fake.calls.count("contract_tc") == 3 + 1 and "gram_contract" not in fake.calls  # xx, yy, xy; K w
    assert tc == pytest.approx(gemm, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(tc_c, gemm_c, rtol=1e-5, atol=1e-5 * np.abs(gemm_c).max())
    if kernel == "gaussian":
        pb = simgap.mmd2(_t(x), _t(y), bandwidth=[2.0, 4.0], per_bandwidth=True, precision=precision)
        monkeypatch.setattr(dispatch, "FORCE_ROUTE", "gemm")
        np.testing.assert_allclose(
            pb, simgap.mmd2(_t(x), _t(y), bandwidth=[2.0, 4.0], per_bandwidth=True, precision=precision),
            rtol=1e-5)
        monkeypatch.setattr(dispatch, "FORCE_ROUTE", "fused_tc")
    fake.calls.clear()
    simgap.kernel_contract(_t(x), _t(y), _t(rng.normal(size=(131, 9))), **kw)  # 9 columns: GEMM route
    assert "contract_tc" not in fake.calls


def test_tensor_core_route_is_off_by_default_and_never_for_highest(monkeypatch):
    assert dispatch.TC_MAX_FEATURES == 0  # until GPU measurements say where it wins
    assert not dispatch.use_tc(16, "highest", 1, "cuda:0")
    monkeypatch.setattr(dispatch, "FORCE_ROUTE", "fused_tc")
    assert not dispatch.use_tc(16, "highest", 1, "cuda:0")
    assert not dispatch.use_tc(16, "tf32", dispatch.TC_MAX_COLUMNS + 1, "cuda:0")
    assert dispatch.use_tc(16, "bf16", 1, "cuda:0")


@pytest.mark.parametrize("setting", ["default", "high", "medium", "highest"])
def test_fp32_matmul_sets_both_apis_and_restores_them(setting):
    """Inside fp32_matmul torch's legacy precision and its per-backend flags agree
    (torch raises on a mixture, in its cuBLASLt path too); after it, the caller's
    settings are back, whatever they were."""
    import warnings

    backends = torch.backends

    def state():
        return (torch.get_float32_matmul_precision(), getattr(backends.cuda.matmul, "fp32_precision", None),
                getattr(backends.mkldnn.matmul, "fp32_precision", None))

    saved = state()
    try:
        if setting != "default":
            torch.set_float32_matmul_precision(setting)
        before = state()
        for mode in ("ieee", "tf32", "ieee"):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with cuda_ops.fp32_matmul(mode):
                    assert torch.get_float32_matmul_precision() == ("high" if mode == "tf32" else "highest")
                    if hasattr(torch._C, "_get_cublas_allow_tf32"):
                        assert torch._C._get_cublas_allow_tf32() == (mode == "tf32")
            assert state() == before
        with pytest.raises(KeyError):  # restored on an exception too
            with cuda_ops.fp32_matmul("tf32"):
                raise KeyError
        assert state() == before
    finally:
        torch.set_float32_matmul_precision(saved[0])
        if saved[1] is not None:
            backends.cuda.matmul.fp32_precision = saved[1]
        if saved[2] is not None:
            backends.mkldnn.matmul.fp32_precision = saved[2]


def test_round_tf32_keeps_ten_mantissa_bits(rng):
    v = torch.from_numpy(rng.normal(size=10000).astype(np.float32))
    r = cuda_routes.round_tf32(v.clone())
    bits = r.view(torch.int32)
    assert int((bits & 0x1FFF).abs().sum()) == 0
    rel = ((r - v).abs() / v.abs()).max()
    assert float(rel) <= 2.0**-11 * 1.0001
    # round to nearest: never further than half a tf32 step
    assert float(((r.double() - v.double()).abs() / v.double().abs()).mean()) < 2.0**-12


def test_mmd2_batch_tiles(fake, route, rng):
    x = rng.normal(size=(120, 4))
    ys = [rng.normal(size=(m, 4)) + s for m, s in ((90, 0.0), (7, 0.5), (70, 1.0))]
    got = simgap.mmd2_batch(_t(x), [_t(y) for y in ys], bandwidth=2.0)
    ref = [ref_impl.mmd2(x, y, bandwidth=2.0, estimator="unbiased") for y in ys]
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_mmd_test_cuda_branch_equals_cpu(fake, route, monkeypatch, rng, estimator):
    import simgap._estimators as estimators

    x, y = rng.normal(size=(70, 3)), rng.normal(size=(61, 3)) + 0.3
    cpu = simgap.mmd_test(x, y, 150, estimator=estimator, seed=5)
    monkeypatch.setattr(estimators, "TEST_MEMORY_BYTES", 131 * 16 * 40)  # batches of 40 relabellings
    got = simgap.mmd_test(_t(x), _t(y), 150, estimator=estimator, seed=5)
    assert got.statistic == pytest.approx(cpu.statistic, rel=1e-9)
    np.testing.assert_allclose(got.null_distribution, cpu.null_distribution, rtol=1e-9, atol=1e-12)
    assert got.p_value == cpu.p_value


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n,m", [(1, 1), (97, 97), (130, 61)])
def test_sliced_wasserstein_chunks(fake, monkeypatch, rng, n, m, weighted):
    monkeypatch.setattr(cuda_ops, "SLICED_CHUNK_BYTES", 1)  # one direction per chunk
    x, y = rng.normal(size=(n, 5)), rng.normal(size=(m, 5)) * 1.2 + 0.1
    theta = ref_impl.random_projections(5, 13, 2)
    a = rng.random(n) if weighted else None
    b = rng.random(m) if weighted else None
    wa = None if a is None else _t(a / a.sum())
    wb = None if b is None else _t(b / b.sum())
    xs, ys = _t(x), _t(y)
    per = dispatch.sliced_wasserstein(xs, ys, theta, wa, wb, 2.0, dispatch.pooled_center([xs, ys])).numpy()
    _, ref = ref_impl.sliced_wasserstein(x, y, projections=theta, x_weights=a, y_weights=b,
                                         return_per_projection=True)
    np.testing.assert_allclose(per, ref, rtol=1e-9, atol=1e-12)
    assert fake.calls.count("wasserstein_1d") == 13
    assert ("sort_rows" in fake.calls) == (not weighted)


# ---- metrics: the CUDA branch (torch on the device; here on CPU tensors) -------------------------

@pytest.fixture
def metrics_on_device(fake, monkeypatch):
    """Call it before the metrics' CUDA branch runs (the k-NN ball statistics
    through the stand-in's gram_radius): with the stand-in installed, tensors
    take it and NumPy arrays the CPU; activate() sets the small GEMM tiles."""

    def activate():
        monkeypatch.setattr(cuda_ops, "GEMM_TILE", 64)

    return activate


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_nearest_neighbors_device_branch(metrics_on_device, rng, k, dtype):
    import simgap

    x = rng.normal(size=(300, 6)).astype(dtype)
    y = rng.normal(size=(130, 6)).astype(dtype)
    cpu = [simgap.nearest_neighbors(*args, k=k) for args in ((x,), (x, y))]
    metrics_on_device()
    for args, (d_cpu, i_cpu) in zip(((x,), (x, y)), cpu):
        d_dev, i_dev = simgap.nearest_neighbors(*(_t(a) for a in args), k=k)
        np.testing.assert_array_equal(i_dev.numpy(), i_cpu)
        np.testing.assert_allclose(d_dev.numpy(), d_cpu, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_nearest_neighbors_device_ties_and_duplicates(metrics_on_device):
    import simgap

    # A grid with many equal distances and exact duplicates: ties go to the lower index.
    g = np.array([[i, j] for i in range(12) for j in range(12)] * 2, dtype=np.float64)
    d_cpu, i_cpu = simgap.nearest_neighbors(g, k=6)
    metrics_on_device()
    d_dev, i_dev = simgap.nearest_neighbors(_t(g), k=6)
    np.testing.assert_array_equal(i_dev.numpy(), i_cpu)
    np.testing.assert_allclose(d_dev.numpy(), d_cpu, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prdc_realism_frechet_device_branch(metrics_on_device, rng, dtype):
    import simgap

    real = rng.normal(size=(200, 5)).astype(dtype)
    fake = np.vstack([rng.normal(size=(150, 5)) * 1.2 + 0.2, real[:3]]).astype(dtype)  # 3 exact copies
    cpu_p = simgap.prdc(real, fake, k=5)
    cpu_r = simgap.realism_score(real, fake, k=3)
    cpu_f = simgap.frechet_distance(real, fake)
    metrics_on_device()
    dev_p = simgap.prdc(_t(real), _t(fake), k=5)
    dev_r = simgap.realism_score(_t(real), _t(fake), k=3).numpy()
    dev_f = simgap.frechet_distance(_t(real), _t(fake))
    assert dev_p == pytest.approx(cpu_p, abs=1e-12)
    inf = np.isinf(cpu_r)
    assert inf.any()  # a copy of a real sample whose ball is kept
    np.testing.assert_array_equal(np.isinf(dev_r), inf)
    np.testing.assert_allclose(dev_r[~inf], cpu_r[~inf], rtol=1e-4 if dtype == np.float32 else 1e-9)
    assert dev_f == pytest.approx(cpu_f, rel=1e-5 if dtype == np.float32 else 1e-9)


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_per_bandwidth_and_stderr_device_branch(fake, route, monkeypatch, rng, estimator):
    x, y = rng.normal(size=(150, 4)), rng.normal(size=(97, 4)) + 0.3
    a = rng.random(150)
    bws = [0.5, 1.0, 3.0]
    cpu_pb = simgap.mmd2(x, y, bandwidth=bws, per_bandwidth=True, estimator=estimator)
    cpu_se = simgap.mmd2(x, y, bandwidth=1.3, return_stderr=True, estimator=estimator, x_weights=a)
    cpu_both = simgap.mmd2(x, y, bandwidth=bws, per_bandwidth=True, return_stderr=True, estimator=estimator)
    gemm_calls = fake.calls.count("gram_contract")
    got_pb = simgap.mmd2(_t(x), _t(y), bandwidth=bws, per_bandwidth=True, estimator=estimator)
    if route == "gemm":  # one Gram pass for the three bandwidths: 3 epilogues per tile
        assert (fake.calls.count("gram_contract") - gemm_calls) % 3 == 0
    np.testing.assert_allclose(got_pb, cpu_pb, rtol=1e-9, atol=1e-12)
    got_se = simgap.mmd2(_t(x), _t(y), bandwidth=1.3, return_stderr=True, estimator=estimator, x_weights=_t(a))
    np.testing.assert_allclose(got_se, cpu_se, rtol=1e-9, atol=1e-12)
    got_both = simgap.mmd2(_t(x), _t(y), bandwidth=bws, per_bandwidth=True, return_stderr=True,
                           estimator=estimator)
    np.testing.assert_allclose(got_both[0], cpu_both[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_both[1], cpu_both[1], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="per_bandwidth"):
        simgap.mmd2(_t(x), _t(y), kernel="laplacian", bandwidth=1.0, per_bandwidth=True)


@pytest.mark.parametrize("per_bandwidth", [False, True])
@pytest.mark.parametrize("estimator", ["block", "linear", "rff"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_linear_rff_device_branch(fake, rng, estimator, per_bandwidth, dtype):
    x = rng.normal(size=(400, 6)).astype(dtype)
    y = (rng.normal(size=(333, 6)) + 0.4).astype(dtype)
    bw = [1.0, 2.5] if per_bandwidth else 2.0
    kw = dict(bandwidth=bw, estimator=estimator, per_bandwidth=per_bandwidth, return_stderr=True, seed=7,
              block_size=16, n_features=64)
    v_cpu, se_cpu = simgap.mmd2(x, y, **kw)
    v_gpu, se_gpu = simgap.mmd2(_t(x), _t(y), **kw)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(v_gpu, v_cpu, rtol=tol, atol=tol * 0.01)
    np.testing.assert_allclose(se_gpu, se_cpu, rtol=max(tol, 1e-6), atol=tol * 0.01)
    assert simgap.mmd2(_t(x), _t(y), **dict(kw, return_stderr=False)) == pytest.approx(v_cpu, rel=tol, abs=tol)


def test_estimator_checks_on_the_device_branch(fake, rng):
    x, y = _t(rng.normal(size=(30, 3))), _t(rng.normal(size=(20, 3)))
    with pytest.raises(ValueError, match="block_size"):
        simgap.mmd2(x, y, estimator="block", block_size=25)
    with pytest.raises(ValueError, match="does not take weights"):
        simgap.mmd2(x, y, estimator="linear", x_weights=_t(np.ones(30)))
    with pytest.raises(ValueError, match="spectral density"):
        simgap.mmd2(x, y, estimator="rff", kernel="imq")
    with pytest.raises(ValueError, match="estimator must be one of"):
        simgap.mmd2(x, y, estimator="fast")


# ---- compare(): kernel, k-NN and distance statistics on the device ------------------------------

@pytest.mark.parametrize("subsampled", [False, True])
def test_compare_device_branch_equals_cpu(fake, monkeypatch, rng, subsampled):
    """compare() on CUDA tensors: the same report as on the host arrays, with the
    kernel sums, k-NN and distances computed by the CUDA branches (here the stand-in)."""
    import pandas as pd

    n, m = 160, 140
    x = rng.normal(size=(n, 6))
    y = rng.normal(size=(m, 6)) * 1.1 + 0.3
    params = pd.DataFrame({"a": rng.random(m), "b": rng.integers(0, 3, m)})
    labels = (rng.integers(0, 3, n), rng.integers(0, 3, m))
    kw = dict(params=params, labels=labels, n_permutations=60, n_bootstrap=20, seed=3,
              max_exact=100 if subsampled else 20_000, c2st_max=120, map_method="pca")
    cpu = simgap.compare(x, y, **kw)
    before = len(fake.calls)
    dev = simgap.compare(_t(x), _t(y), **kw)
    assert dev.settings["device"] == "cuda:0" and cpu.settings["device"] == "cpu"
    assert len(fake.calls) > before  # the kernel sums went through the CUDA module
    for key in ("mmd2", "mmd2_stderr", "p_value", "swd", "fd", "c2st_auc"):
        assert getattr(dev, key) == pytest.approx(getattr(cpu, key), rel=1e-8, abs=1e-12), key
    assert dev.mmd2_ci == pytest.approx(cpu.mmd2_ci, rel=1e-8, abs=1e-12)
    assert dev.prdc == pytest.approx(cpu.prdc, abs=1e-12)
    if subsampled:
        assert dev.mmd2_block["value"] == pytest.approx(cpu.mmd2_block["value"], rel=1e-8, abs=1e-12)
    else:
        assert dev.mmd2_block is None and cpu.mmd2_block is None
    pd.testing.assert_frame_equal(dev.synthetic_scores, cpu.synthetic_scores, rtol=1e-8, atol=1e-12)
    pd.testing.assert_frame_equal(dev.real_coverage, cpu.real_coverage, rtol=1e-8, atol=1e-12)
    pd.testing.assert_frame_equal(dev.per_class, cpu.per_class, rtol=1e-8, atol=1e-12)
    pd.testing.assert_frame_equal(dev.clusters, cpu.clusters, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("method", ["kmm", "classifier"])
def test_recommend_device_branch_equals_cpu(fake, monkeypatch, rng, method):
    """recommend() on CUDA tensors: the KMM contractions and neighbour searches on the
    device give the CPU's recommendation."""
    shift = rng.uniform(-2, 2, size=150)
    syn = rng.normal(size=(150, 3)) + shift[:, None]
    real = np.vstack([rng.normal(size=(90, 3)) + 0.7, rng.normal(size=(20, 3)) + 9.0])  # an unreached cluster
    cpu = simgap.recommend(real, syn, {"shift": shift}, method=method, seed=0)
    before = len(fake.calls)
    dev = simgap.recommend(_t(real), _t(syn), {"shift": shift}, method=method, seed=0)
    assert len(fake.calls) > before
    assert cpu.unreached_real.size == 20
    np.testing.assert_array_equal(dev.unreached_real, cpu.unreached_real)
    np.testing.assert_allclose(dev.weights, cpu.weights, rtol=1e-7, atol=1e-12)
    assert dev.current_gap == pytest.approx(cpu.current_gap, rel=1e-8)
    assert dev.predicted_gap == pytest.approx(cpu.predicted_gap, rel=1e-7, abs=1e-12)
    assert dev.parameters["shift"].value == pytest.approx(cpu.parameters["shift"].value, rel=1e-7)


def test_sim_optimizer_device_branch_equals_cpu(fake, monkeypatch, rng):
    """SimOptimizer with CUDA latents: every configuration scored on the device, the
    same values and study as on the host; a set on another device is named."""
    pytest.importorskip("optuna")
    space = {"shift": (-2.0, 2.0)}
    real = rng.normal(0.7, 1.0, size=(200, 2))
    sets = [rng.normal(s, 1.0, size=(90, 2)) for s in (-1.0, 0.5, 1.5)]
    configs = [{"shift": s} for s in (-1.0, 0.5, 1.5)]
    cpu = simgap.SimOptimizer(space, real, seed=0, study_name="cpu")
    v_cpu = cpu.tell(configs, sets)
    before = len(fake.calls)
    dev = simgap.SimOptimizer(space, _t(real), seed=0, study_name="dev")
    assert dev.bandwidth == pytest.approx(cpu.bandwidth, rel=1e-12)
    seen = []
    dev.objective = lambda config, latents, mmd2: seen.append(type(latents)) or mmd2
    v_dev = dev.tell(configs, [_t(s) for s in sets])
    assert len(fake.calls) > before and seen == [torch.Tensor] * 3
    np.testing.assert_allclose(v_dev, v_cpu, rtol=1e-9)
    with pytest.raises(ValueError, match=r"synthetic_sets\[1\] is on cpu but real is on cuda:0"):
        dev.tell(configs[:2], [_t(sets[0]), sets[1]])


def test_device_median_is_numpys_and_has_no_size_limit(rng):
    for k in (1, 2, 7, 10):
        v = rng.normal(size=k)
        assert cuda_ops.median(_t(v)) == np.median(v)
    big = rng.random(2**24 + 3).astype(np.float32)  # torch.quantile refuses more than 2^24 values
    assert cuda_ops.median(_t(big)) == pytest.approx(float(np.median(big)), rel=0, abs=0)


@pytest.mark.parametrize("scale", [1e-20, 1e20])
def test_device_float32_at_extreme_magnitudes_is_computed_in_float64(fake, rng, scale):
    """As on the host (test_validation): the device checks promote float32 data whose
    products would overflow or underflow, and MMD^2 is the float64 one."""
    x = (rng.normal(size=(90, 4)) * scale).astype(np.float32)
    y = ((rng.normal(size=(70, 4)) + 0.3) * scale).astype(np.float32)
    assert inputs.as_matrix(_t(x), "x").dtype == torch.float64
    assert inputs.as_matrix(_t(x / scale), "x").dtype == torch.float32
    want = simgap.mmd2(x.astype(np.float64) / scale, y.astype(np.float64) / scale)
    assert simgap.mmd2(_t(x), _t(y)) == pytest.approx(want, rel=1e-9)
