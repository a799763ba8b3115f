"""The one device dispatch: for each primitive, the CPU core or CUDA, and on
CUDA the route and the precision of the products.

The device of a call is decided once, at the public boundary
(:func:`simgap._ops.inputs.device_of`); the checked arrays then carry it by
their type: NumPy arrays run on the CPU (:mod:`simgap._ops.cpu`), torch
tensors on CUDA (:mod:`simgap._ops.cuda`, :mod:`simgap._ops.cuda_routes`).
Every function here takes checked inputs of one dtype (trusted, not checked
again) and returns float64 results: NumPy arrays for CPU inputs, CUDA tensors
for CUDA inputs (Python floats for scalars).  ``spec`` is a
:class:`~simgap._ops.spec.KernelSpec`; ``center`` (see :func:`pooled_center`)
is subtracted from every row before the Gram products of distance kernels.

CUDA routes for kernel contractions and matrices (see ``cuda_routes``): the
fused kernel below ``GEMM_MIN_FEATURES`` features at "highest" precision, the
cuBLAS-GEMM tile route from there, for more weight columns than the GEMM
epilogue holds and for the tensor-core precisions; the fused tensor-core
route for "tf32" / "bf16" up to ``TC_MAX_FEATURES`` features (0: off until GPU
measurements show it winning) and ``TC_MAX_COLUMNS`` columns.
``FORCE_ROUTE`` ("fused", "gemm", "fused_tc"; None: these rules) lets tests
and benchmarks pick one.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._util.arrays import is_tensor
from . import backend, cpu, cuda, cuda_routes
from .spec import resolve_kernel, single_scale

__all__ = ["PRECISIONS", "GEMM_MIN_FEATURES", "FORCE_ROUTE", "TC_MAX_FEATURES", "TC_MAX_COLUMNS",
           "check_precision", "use_gemm", "use_tc", "pooled_center", "kernel_contract", "self_sum", "kernel_sum",
           "kernel_matrix", "kernel_rowwise", "mmd_blocks", "rff_sums", "knn", "radius_stats",
           "sliced_wasserstein", "mean_cov", "pair_distances", "median", "column_dots", "column_sums", "centred",
           "project", "wasserstein_rows", "unpack_bits"]

PRECISIONS = ("highest", "tf32", "bf16")
# "highest": the fused route below this many features, the GEMM route from it.
GEMM_MIN_FEATURES = 128
# Benchmarks may force a route ("fused", "gemm" or, below "highest",
# "fused_tc"); None chooses by the rules here.
FORCE_ROUTE: str | None = None
# precision "tf32" / "bf16": the fused tensor-core route (WMMA Gram tiles kept
# in shared memory) up to this many features and weight columns.  0 keeps it
# off: it is chosen only once GPU measurements show it beating the GEMM route
# (benchmarks/gpu_bench.py times both); FORCE_ROUTE = "fused_tc" selects it
# for tests and benchmarks.
TC_MAX_FEATURES = 0
TC_MAX_COLUMNS = 8
_TC_CAPABLE: dict[Any, bool] = {}
# Rows centred per step on the host (centred); directions per call when reading
# 1-D distances off projected values on the host (wasserstein_rows).
_HOST_CENTRE_ELEMENTS = 1 << 22
_IDENTITY_BLOCK = 32


def check_precision(precision: Any, device: str) -> str:
    """The precision of the pairwise products, checked against the device.

    "highest" (the default) multiplies in the input precision on every device;
    "tf32" and "bf16" use GPU tensor cores and need CUDA tensors.
    """
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    precision = precision.lower()
    if precision != "highest" and device == "cpu":
        raise ValueError(
            f"precision={precision!r} runs on GPU tensor cores and needs CUDA tensors; "
            "the CPU kernels multiply in the input precision (use precision='highest')"
        )
    return precision


def use_gemm(d: int, precision: str, q: int = 1) -> bool:
    """The GEMM route for d features, q weight columns (CUDA)."""
    if FORCE_ROUTE is not None:
        return FORCE_ROUTE == "gemm" or precision != "highest"
    return precision != "highest" or d >= GEMM_MIN_FEATURES or q > backend.CUDA.gram_contract_max_columns


def use_tc(d: int, precision: str, q: int, device) -> bool:
    """The fused tensor-core route: tf32 / bf16, few features and weight
    columns, compute capability 8.0+ (or forced)."""
    if precision == "highest" or q > TC_MAX_COLUMNS:
        return False
    if FORCE_ROUTE is not None:
        return FORCE_ROUTE == "fused_tc"
    if d > TC_MAX_FEATURES:
        return False
    if device not in _TC_CAPABLE:
        import torch

        _TC_CAPABLE[device] = torch.cuda.get_device_capability(device)[0] >= 8
    return _TC_CAPABLE[device]


def _device_contract(x, y, w, spec, center, same: bool, exclude: bool, precision: str, symmetric: bool = False):
    """K(x, y) @ w on CUDA by the route the rules choose (see cuda.kernel_contract
    for ``symmetric``; a list of specs gives a list of results)."""
    if use_tc(x.shape[1], precision, w.shape[1], x.device):
        return cuda_routes.tc_contract(x, y, w, spec, center, same, exclude, precision, symmetric)
    if use_gemm(x.shape[1], precision, w.shape[1]):
        return cuda_routes.gemm_contract(x, y, w, spec, center, same, exclude, precision, symmetric)
    if isinstance(spec, list):  # the fused route: one pass per spec
        return [_device_contract(x, y, w, sp, center, same, exclude, precision, symmetric) for sp in spec]
    return cuda.kernel_contract(x, y, w, spec, center, same, exclude, symmetric)


# ---- kernel sums -------------------------------------------------------------------------------

def pooled_center(arrays: Sequence[Any], spec: Any = None) -> Any:
    """The float64 mean of all rows of ``arrays`` (on their device), or None
    when ``spec`` is given and its kernel does not use distances."""
    if spec is not None and not spec.uses_distance:
        return None
    return cuda.pooled_mean(arrays) if is_tensor(arrays[0]) else cpu.pooled_mean(arrays)


def kernel_contract(x, y, w, spec, center, same: bool, exclude: bool = False, precision: str = "highest"):
    """out (n x q, float64) = K(x, y) @ w, w (m, q) in any real dtype (cast to
    that of x); ``same``: x and y are the same points (the diagonal is k(0)
    exactly); ``exclude``: the diagonal counts as 0 (needs same)."""
    if not is_tensor(x):
        return cpu.kernel_contract(x, y, w, spec, center, same, exclude)
    return _device_contract(x, y, w, spec, center, same, exclude, precision)


def _per_bandwidth_specs(spec, per_bandwidth: bool):
    return [single_scale(spec, s) for s in spec.bandwidths] if per_bandwidth else spec


def self_sum(z, w, spec, center, exclude: bool, precision: str = "highest", per_bandwidth: bool = False):
    """w' K(z, z) w in float64 (w None: ones), the diagonal excluded or not,
    from the kernel tiles on and above the diagonal.  A float; with
    ``per_bandwidth`` the pair (total, array of the sums of each gaussian
    bandwidth alone)."""
    if not is_tensor(z):
        per = np.zeros(len(spec.bandwidths)) if per_bandwidth else None
        total = cpu.kernel_sum(z, z, w, w, spec, center, True, exclude, True, per)
        return (total, per) if per_bandwidth else total
    w = cuda.ones(z) if w is None else w
    specs = _per_bandwidth_specs(spec, per_bandwidth)
    parts = _device_contract(z, z, w.reshape(-1, 1), specs, center, True, exclude, precision, symmetric=True)
    values = [float(w @ diag[:, 0]) + 2.0 * float(w @ upper[:, 0])
              for diag, upper in (parts if per_bandwidth else [parts])]
    if per_bandwidth:
        per = np.array(values)
        return float(np.sum(per)), per
    return values[0]


def kernel_sum(x, y, a, b, spec, center, same: bool, precision: str = "highest", per_bandwidth: bool = False):
    """a' K(x, y) b in float64 (None: ones).  A float; with ``per_bandwidth``
    the pair (total, array of the sums of each gaussian bandwidth alone)."""
    if not is_tensor(x):
        sym = same and a is b  # x is y with the same weights: the tiles above the diagonal, halved
        per = np.zeros(len(spec.bandwidths)) if per_bandwidth else None
        total = cpu.kernel_sum(x, y, a, a if sym else b, spec, center, same, False, sym, per)
        return (total, per) if per_bandwidth else total
    a = cuda.ones(x) if a is None else a
    b = cuda.ones(y) if b is None else b
    out = _device_contract(x, y, b.reshape(-1, 1), _per_bandwidth_specs(spec, per_bandwidth), center, same,
                           False, precision)
    if per_bandwidth:
        per = np.array([float(a @ o[:, 0]) for o in out])
        return float(np.sum(per)), per
    return float(a @ out[:, 0])


def kernel_matrix(x, y, spec, center, same: bool, precision: str = "highest"):
    """The n x m kernel matrix, in the dtype of x."""
    if not is_tensor(x):
        return cpu.kernel_matrix(x, y, spec, center, same)
    if use_gemm(x.shape[1], precision):
        return cuda_routes.gemm_matrix(x, y, spec, center, same, precision)
    return cuda.kernel_matrix(x, y, spec, center, same)


def kernel_rowwise(a, b, spec):
    """k(a_i, b_i) for paired rows, float64."""
    return cuda.kernel_rowwise(a, b, spec) if is_tensor(a) else cpu.kernel_rowwise(a, b, spec)


def mmd_blocks(x, y, ix: np.ndarray, iy: np.ndarray, block_size: int, spec, center):
    """The unbiased MMD^2 of each block x[ix[b B:(b+1) B]], y[iy[b B:(b+1) B]]
    (ix, iy: int64 NumPy row indices), float64."""
    fn = cuda.mmd_blocks if is_tensor(x) else cpu.mmd_blocks
    return fn(x, y, ix, iy, block_size, spec, center)


def rff_sums(z, w, center, omegas, want_sums=None, *, chunk_elements: int):
    """The random-Fourier-feature sums of the rows of z (see cpu.rff_sums);
    w, center, omegas and want_sums are host arrays, and so are the results."""
    fn = cuda.rff_sums if is_tensor(z) else cpu.rff_sums
    return fn(z, w, center, omegas, want_sums, chunk_elements=chunk_elements)


# ---- neighbours, balls, projections, moments ---------------------------------------------------

def knn(x, y, k: int, center):
    """(distances float64 (n, k) ascending, indices int64 (n, k)) of the k
    nearest rows of y (None: of x, each row excluded from its own)."""
    return cuda.knn(x, y, k, center) if is_tensor(x) else cpu.knn(x, y, k, center)


def radius_stats(queries, refs, radii, center):
    """count[q] = #{j : ||q - r_j|| < radii[j]}, max_ratio[q] = max_j radii[j]^2 / ||q - r_j||^2
    (radii float64 on the device of the rows; negative radii are ignored)."""
    fn = cuda.radius_stats if is_tensor(queries) else cpu.radius_stats
    return fn(queries, refs, radii, center)


def sliced_wasserstein(x, y, theta: np.ndarray, a, b, p: float, center):
    """W_p^p of the projections of x and y on each column of theta (host, d x L;
    a, b: float64 weights summing to 1, or None), float64 of length L."""
    fn = cuda.sliced_wasserstein if is_tensor(x) else cpu.sliced_wasserstein
    return fn(x, y, theta, a, b, p, center)


def mean_cov(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample covariance (ddof = 1) in float64, as NumPy arrays (on
    CUDA computed on the device, O(d^2) copied back)."""
    if not is_tensor(x):
        return cpu.mean_cov(x)
    mu, cov = cuda.mean_cov(x)
    return mu.cpu().numpy(), cov.cpu().numpy()


def pair_distances(parts: Sequence[Any]):
    """The distances ||z_i - z_j||, i < j, of the rows of the parts pooled, float64."""
    return cuda.pair_distances(parts) if is_tensor(parts[0]) else cpu.pair_distances(parts)


def median(values) -> float:
    """NumPy's median of a 1-D array or tensor."""
    return cuda.median(values) if is_tensor(values) else cpu.median(values)


def column_dots(a, b):
    """sum_i a[i, j] b[i, j] for each column j (einsum "ij,ij->j")."""
    if is_tensor(a):
        import torch

        return torch.einsum("ij,ij->j", a, b)
    return np.einsum("ij,ij->j", a, b)


# ---- the primitives of simgap.distributed's sharded passes -------------------------------------

def column_sums(a) -> np.ndarray:
    """The float64 sums of the columns of a, as a NumPy array."""
    if not is_tensor(a):
        return a.sum(axis=0, dtype=np.float64)
    import torch

    return a.sum(dim=0, dtype=torch.float64).cpu().numpy()


def centred(a, center, dtype):
    """a - center (float64, where a is) rounded to ``dtype`` (a NumPy dtype), through
    float64, a block of rows at a time."""
    if is_tensor(a):
        import torch

        return cuda.centred(a, center, getattr(torch, np.dtype(dtype).name))
    out = np.empty(a.shape, dtype=dtype)
    step = max(1, _HOST_CENTRE_ELEMENTS // max(1, a.shape[1]))
    for r0 in range(0, a.shape[0], step):
        out[r0 : r0 + step] = (a[r0 : r0 + step].astype(np.float64) - center).astype(dtype)
    return out


def project(a, theta_rows):
    """The projections of the rows of a on the directions theta_rows (L x d, in
    the dtype of a, where a is), direction-major: L x n, contiguous, in the
    precision of a (on CUDA IEEE fp32 or fp64 GEMM, never tf32; on the CPU the
    linear kernel of the C++ core)."""
    if not is_tensor(a):
        linear = resolve_kernel("linear", "median", None, 1.0, 1, [np.empty((0, 1))])
        return np.ascontiguousarray(cpu.kernel_matrix(a, theta_rows, linear, None, False).T)
    import torch

    with cuda.fp32_matmul("ieee"):
        return torch.mm(theta_rows, a.t())


def wasserstein_rows(px, py, a, b, p: float):
    """W_p^p(px[l], py[l]) for each row l of the projected values px (L x n)
    and py (L x m), one dtype, where they are; a / b the float64 weights of
    the n / m points summing to 1 (None: uniform).  float64 of length L, where
    px is; on CUDA px and py are consumed.

    On the CPU the values go through the C++ sort and merge of
    :func:`sliced_wasserstein`: fed as points in R^k projected on the k
    identity directions, which reproduces them exactly.  k = 32: a call has a
    fixed cost per point (packing), so one direction per call would be several
    times slower; the k x k identity products cost little more than reading the
    values, and the C++ sorts the k directions of a call in parallel.
    """
    L = px.shape[0]
    if is_tensor(px):
        import torch

        out = torch.zeros(L, dtype=torch.float64, device=px.device)
        cuda.wasserstein_rows(px, py, a, b, p, out)
        return out
    out = np.empty(L)
    k = _IDENTITY_BLOCK
    for l0 in range(0, L, k):
        l1 = min(L, l0 + k)
        u, v = np.ascontiguousarray(px[l0:l1].T), np.ascontiguousarray(py[l0:l1].T)
        out[l0:l1] = cpu.sliced_wasserstein(u, v, np.eye(l1 - l0), a, b, p, None)
    return out


def unpack_bits(bits, c0: int, c1: int, dtype, ones_column: bool = False):
    """Bits c0 .. c1 - 1 of each row of the bit-packed uint8 matrix ``bits``
    (``np.packbits`` order: the first bit the high one) as 0/1 values of
    ``dtype`` (a NumPy dtype), where ``bits`` is; with ``ones_column`` a column
    of ones first.  Contiguous."""
    q = c1 - c0
    if is_tensor(bits):
        import torch

        sub = bits[:, c0 // 8 : (c1 + 7) // 8]
        shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=bits.device)
        sub = ((sub[:, :, None] >> shifts) & 1).reshape(bits.shape[0], -1)[:, c0 % 8 : c0 % 8 + q]
        out = torch.empty((bits.shape[0], q + ones_column), dtype=getattr(torch, np.dtype(dtype).name),
                          device=bits.device)
    else:
        sub = np.unpackbits(bits[:, c0 // 8 : (c1 + 7) // 8], axis=1, count=q + (c0 % 8))[:, c0 % 8 :]
        out = np.empty((bits.shape[0], q + ones_column), dtype=dtype)
    if ones_column:
        out[:, 0] = 1
    out[:, int(ones_column):] = sub
    return out
