"""The CUDA path of the distance functions: torch CUDA tensors in, CUDA tensors
(arrays) or Python floats (scalars) out, work queued on the caller's current
stream, no copy of the data to the host.  Validation mirrors the CPU path
(_validation.py) with torch operations on the device.

Two routes compute kernel sums and contractions:

* the fused route (``kernel_contract.cu``): Gram tile, kernel and contraction
  in one kernel, the tile never leaving registers; for few features, where
  memory traffic dominates;
* the GEMM route (``gram_tile.cu``): the Gram tile X_i Y_j^T of the centred
  rows by cuBLAS (``torch.mm`` on the current stream: torch's CUDA build ships
  cuBLAS, so the build needs no cuBLAS of its own) into a bounded workspace,
  then one fused kernel that applies the kernel and contracts with up to 8
  weight columns in float64 (more columns: kernel values, then a float64 GEMM).
  It is taken for many features and for the tensor-core precisions.

``precision``: "highest" multiplies in the input precision (IEEE fp32, never
tf32, or fp64); "tf32" and "bf16" round the centred inputs to tf32 (10-bit
mantissa) or bf16 (7-bit) once, compute their squared norms from the rounded
values in float64 and multiply on tensor cores with fp32 accumulation, so the
squared distances are those of the rounded points up to fp32 accumulation.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Sequence

import numpy as np

from .backend import _cuda
from .._util.checks import subsample_rows
from .inputs import float32_in_range

__all__ = ["as_cuda_matrix", "kernel_contract", "kernel_matrix", "knn", "mean_cov", "median_bandwidth",
           "mmd2_batch", "mmd2_block", "mmd2_exact", "mmd2_linear", "radius_stats", "rff_pass",
           "sliced_wasserstein"]

# "highest": the fused route below this many features, the GEMM route from it.
GEMM_MIN_FEATURES = 128
# Benchmarks may force a route ("fused", "gemm" or, below "highest",
# "fused_tc"); None chooses by the rules here.
FORCE_ROUTE: str | None = None
# precision "tf32" / "bf16": the fused tensor-core route (contract_tc.cu: WMMA
# Gram tiles kept in shared memory) up to this many features and weight
# columns.  0 keeps it off: it is chosen only once GPU measurements show it
# beating the GEMM route (benchmarks/gpu_bench.py times both);
# FORCE_ROUTE = "fused_tc" selects it for tests and benchmarks.
TC_MAX_FEATURES = 0
TC_MAX_COLUMNS = 8
# Side of the square Gram tiles of the GEMM route (4096^2 fp32 = 64 MiB; a
# float64 kernel tile for many-column contractions is 128 MiB).
GEMM_TILE = 4096
# Rows centred (through float64) per step when the operands are prepared.
_PREP_ROWS = 1 << 15
# Bytes of projected values (and their sorted copy) per chunk of directions.
SLICED_CHUNK_BYTES = 1 << 30


def _torch():
    import torch

    return torch


def as_cuda_matrix(t: Any, name: str, allow_empty: bool = False):
    """A contiguous 2-D float32/float64 CUDA tensor (copied only when needed);
    ``allow_empty``: 0 rows are accepted (a shard of simgap.distributed).
    float32 data outside ``_validation.FLOAT32_MAGNITUDE`` becomes float64,
    as on the host."""
    torch = _torch()
    if t.is_complex():
        raise TypeError(f"{name} has complex dtype {t.dtype}; expected real floating point")
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif t.dtype not in (torch.float32, torch.float64):  # integers, bool, other floats
        t = t.double()
    if t.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {t.dim()}-D with shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} has 0 rows; at least one sample is needed")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least one feature is needed")
    if t.shape[0]:
        # One reduction, one host sync, no full-size temporary: NaN propagates, Inf shows.
        lo, hi = (float(v) for v in torch.stack(torch.aminmax(t)).double().cpu())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or Inf")
        if t.dtype == torch.float32 and not float32_in_range(max(-lo, hi)):
            t = t.double()  # float32 products would overflow or underflow (as_matrix's rule)
    return t.contiguous()


def cuda_pair(x: Any, y: Any):
    torch = _torch()
    xa = as_cuda_matrix(x, "x")
    if y is None:
        return xa, xa, True
    ya = as_cuda_matrix(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(
            f"x has {xa.shape[1]} columns but y has {ya.shape[1]}; both must have the same number of features"
        )
    dtype = torch.float64 if torch.float64 in (xa.dtype, ya.dtype) else torch.float32
    same = xa.data_ptr() == ya.data_ptr() and xa.shape == ya.shape and xa.dtype == ya.dtype
    xa, ya = xa.to(dtype), ya.to(dtype)
    return xa, (xa if same else ya), same


def _center(arrays: Sequence[Any], spec) -> Any:
    if not spec.uses_distance:
        return None
    torch = _torch()
    total = sum(a.sum(dim=0, dtype=torch.float64) for a in arrays)
    return (total / sum(a.shape[0] for a in arrays)).contiguous()


def _stream(t) -> tuple[int, int]:
    torch = _torch()
    return t.device.index, torch.cuda.current_stream(t.device).cuda_stream


def _common(x, y, spec, center):
    torch = _torch()
    xn = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    yn = torch.empty(y.shape[0], dtype=torch.float64, device=x.device)
    c = 0 if center is None else center.data_ptr()
    return xn, yn, c


def contract(x, y, w, spec, center, same: bool, exclude: bool, precision: str = "highest",
             symmetric: bool = False):
    """out (n x q, float64) = K(x, y) @ w on the device (w: (m, q)).

    With ``symmetric`` (x is y, and the caller only needs w' K w) only the
    tiles on and above the diagonal are evaluated and the result is a pair
    (out, upper) with w' K w = w' out + 2 w' upper.  A list of specs gives a
    list of results (one pass over the Gram tiles on the GEMM route).
    """
    torch = _torch()
    if use_tc(x.shape[1], precision, w.shape[1], x.device):
        return tc_contract(x, y, w, spec, center, same, exclude, precision, symmetric)
    if use_gemm(x.shape[1], precision, w.shape[1]):
        return gemm_contract(x, y, w, spec, center, same, exclude, precision, symmetric)
    if isinstance(spec, list):  # the fused route: one pass per spec
        return [contract(x, y, w, sp, center, same, exclude, precision, symmetric) for sp in spec]
    w = w.to(x.dtype).contiguous()
    out = torch.zeros((x.shape[0], w.shape[1]), dtype=torch.float64, device=x.device)
    upper = torch.zeros_like(out) if symmetric else None
    xn, yn, c = _common(x, y, spec, center)
    device, stream = _stream(x)
    _cuda.kernel_contract(x.data_ptr(), x.shape[0], y.data_ptr(), y.shape[0], x.shape[1],
                          w.data_ptr(), w.shape[1], out.data_ptr(), xn.data_ptr(), yn.data_ptr(),
                          c, x.dtype == torch.float64, *spec.args(), same, exclude, device, stream,
                          0 if upper is None else upper.data_ptr())
    return (out, upper) if symmetric else out


def weighted_self_sum(z, w, spec, center, exclude: bool, precision: str):
    """w' K(z, z) w (diagonal excluded or not), from the tiles on and above the
    diagonal: a float, or an array of floats for a list of specs."""
    parts = contract(z, z, w.reshape(-1, 1), spec, center, True, exclude, precision, symmetric=True)
    values = [float(w @ diag[:, 0]) + 2.0 * float(w @ upper[:, 0])
              for diag, upper in (parts if isinstance(spec, list) else [parts])]
    return np.array(values) if isinstance(spec, list) else values[0]


def kernel_matrix(x, y, spec, same: bool, precision: str = "highest"):
    torch = _torch()
    center = _center([x] if same else [x, y], spec)
    if use_gemm(x.shape[1], precision):
        return gemm_matrix(x, y, spec, center, same, precision)
    out = torch.empty((x.shape[0], y.shape[0]), dtype=x.dtype, device=x.device)
    xn, yn, c = _common(x, y, spec, center)
    device, stream = _stream(x)
    _cuda.kernel_matrix(x.data_ptr(), x.shape[0], y.data_ptr(), y.shape[0], x.shape[1],
                        out.data_ptr(), xn.data_ptr(), yn.data_ptr(), c,
                        x.dtype == torch.float64, *spec.args(), same, device, stream)
    return out


def kernel_contract(x, y, w, spec, same: bool, precision: str = "highest"):
    center = _center([x] if same else [x, y], spec)
    return contract(x, y, w, spec, center, same, False, precision)


# ---- the GEMM route ---------------------------------------------------------

@contextlib.contextmanager
def fp32_matmul(mode: str):
    """torch fp32 matmuls in IEEE fp32 ("ieee") or on tf32 tensor cores ("tf32")
    inside the block; the caller's settings are restored after.

    Set through ``torch.set_float32_matmul_precision`` ("high": tf32,
    "highest": IEEE), which keeps torch's two APIs consistent (the legacy
    precision and, torch >= 2.9, the per-backend ``fp32_precision`` flags):
    setting only ``torch.backends.cuda.matmul.fp32_precision`` leaves them
    mixed, and torch then raises in ``get_float32_matmul_precision`` and in its
    cuBLASLt path."""
    torch = _torch()
    mm = torch.backends.cuda.matmul
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller mixed the two APIs; its legacy setting is not readable
        legacy = None
    new = getattr(mm, "fp32_precision", None)
    mkl = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    mkl_new = getattr(mkl, "fp32_precision", None)
    torch.set_float32_matmul_precision("high" if mode == "tf32" else "highest")
    try:
        yield
    finally:
        if legacy is not None:
            torch.set_float32_matmul_precision(legacy)  # also sets the flags put back below
        if new is not None:
            mm.fp32_precision = new
        if mkl_new is not None:
            mkl.fp32_precision = mkl_new


_BF16_OUT_DTYPE: bool | None = None


def _bf16_mm_to_fp32_supported(device) -> bool:
    """Whether torch.mm takes bf16 inputs with a float32 output (torch >= 2.9 on CUDA)."""
    global _BF16_OUT_DTYPE
    if _BF16_OUT_DTYPE is None:
        torch = _torch()
        a = torch.ones((2, 2), dtype=torch.bfloat16, device=device)
        try:
            _BF16_OUT_DTYPE = torch.mm(a, a, out_dtype=torch.float32).dtype == torch.float32
        except (TypeError, RuntimeError, NotImplementedError):
            _BF16_OUT_DTYPE = False
    return _BF16_OUT_DTYPE


def round_tf32(t):
    """float32 values rounded to tf32 (10 explicit mantissa bits, nearest-even)."""
    torch = _torch()
    i = t.contiguous().view(torch.int32)
    i = (i + 0x0FFF + ((i >> 13) & 1)) & -0x2000
    return i.view(torch.float32)


def centred(a, center, dtype):
    """a - center rounded to dtype (through float64, a block of rows at a
    time); a itself when there is nothing to do."""
    torch = _torch()
    if center is None and a.dtype == dtype:
        return a
    out = torch.empty(a.shape, dtype=dtype, device=a.device)
    for r0 in range(0, a.shape[0], _PREP_ROWS):
        block = a[r0:r0 + _PREP_ROWS]
        if center is not None:
            block = block.double() - center
        out[r0:r0 + _PREP_ROWS] = block.to(dtype)
    return out


class Operand:
    """One side of a GEMM-route product: the centred rows rounded as the
    precision says (``values``, float32 or float64), their float64 squared
    norms, the tensor the GEMM reads (``gemm``: ``values`` or a bf16 copy), and
    the original rows for exact near-duplicate distances (None below highest)."""

    def __init__(self, a, center, precision: str):
        torch = _torch()
        highest = precision == "highest"
        values = centred(a, center, a.dtype if highest else torch.float32)
        if precision == "tf32":
            values = round_tf32(values)
        elif precision == "bf16":
            values = values.to(torch.bfloat16).float()
        self.values = values
        self.norms = torch.empty(a.shape[0], dtype=torch.float64, device=a.device)
        device, stream = _stream(a)
        _cuda.row_norms(values.data_ptr(), a.shape[0], a.shape[1], self.norms.data_ptr(),
                        values.dtype == torch.float64, device, stream)
        self.gemm = values
        self.mode = "ieee"
        if precision == "tf32":
            self.mode = "tf32"
        elif precision == "bf16":
            if _bf16_mm_to_fp32_supported(a.device):
                self.gemm = values.to(torch.bfloat16)
            else:  # bf16 values are exact in tf32, and so are their products
                self.mode = "tf32"
        self.rows = a if highest else None

    def gram(self, other: "Operand", i0: int, i1: int, j0: int, j1: int):
        """G = values[i0:i1] @ other.values[j0:j1]^T, contiguous (float32 or float64)."""
        torch = _torch()
        a, b = self.gemm[i0:i1], other.gemm[j0:j1].t()
        if a.dtype == torch.bfloat16:
            g = torch.mm(a, b, out_dtype=torch.float32)
        else:
            with fp32_matmul(self.mode):
                g = torch.mm(a, b)
        return g if g.is_contiguous() else g.contiguous()  # the epilogues read it row-major


def use_gemm(d: int, precision: str, q: int = 1) -> bool:
    if FORCE_ROUTE is not None:
        return FORCE_ROUTE == "gemm" or precision != "highest"
    return precision != "highest" or d >= GEMM_MIN_FEATURES or q > _cuda.gram_contract_max_columns


_TC_CAPABLE: dict[Any, bool] = {}


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
        _TC_CAPABLE[device] = _torch().cuda.get_device_capability(device)[0] >= 8
    return _TC_CAPABLE[device]


def tc_contract(x, y, w, spec, center, same: bool, exclude: bool, precision: str,
                symmetric: bool = False):
    """out (n x q, float64) = K(x, y) @ w by the fused tensor-core kernel.

    The operands are centred and rounded once (:class:`Operand`: tf32-exact
    float32 values, or a bf16 copy), with float64 norms of the rounded rows;
    the Gram tiles never leave shared memory.  Same results structure as
    :func:`gemm_contract` (pairs with ``symmetric``, a list for a list of
    specs, one pass per spec).
    """
    torch = _torch()
    specs = spec if isinstance(spec, list) else [spec]
    xo = Operand(x, center, precision)
    yo = xo if same else Operand(y, center, precision)
    bf16 = precision == "bf16"
    xin = xo.values.to(torch.bfloat16) if bf16 else xo.values
    yin = xin if same else (yo.values.to(torch.bfloat16) if bf16 else yo.values)
    n, m, q = x.shape[0], y.shape[0], w.shape[1]
    wk = w.to(torch.float32).contiguous()
    device, stream = _stream(x)
    results = []
    for sp in specs:
        out = torch.zeros((n, q), dtype=torch.float64, device=x.device)
        upper = torch.zeros_like(out) if symmetric else None
        _cuda.contract_tc(xin.data_ptr(), n, yin.data_ptr(), m, x.shape[1], bf16, xo.norms.data_ptr(),
                          yo.norms.data_ptr(), wk.data_ptr(), q, out.data_ptr(),
                          0 if upper is None else upper.data_ptr(), *sp.args(), same, exclude, device,
                          stream)
        results.append((out, upper) if symmetric else out)
    return results if isinstance(spec, list) else results[0]


def _tile_args(g, xo: Operand, yo: Operand, i0: int, j0: int):
    torch = _torch()
    x_rows = 0 if xo.rows is None else xo.rows.data_ptr()
    y_rows = 0 if yo.rows is None else yo.rows.data_ptr()
    return (g.data_ptr(), g.shape[1], g.shape[0], g.shape[1], i0, j0, xo.norms.data_ptr(),
            yo.norms.data_ptr(), x_rows, y_rows, xo.values.shape[1]), g.dtype == torch.float64


def gemm_contract(x, y, w, spec, center, same: bool, exclude: bool, precision: str,
                  symmetric: bool = False):
    """out (n x q, float64) = K(x, y) @ w through cuBLAS Gram tiles.

    With ``symmetric`` (x is y and the caller only needs w' K w) only the tiles
    on and above the diagonal are evaluated; the result is then a pair
    (out_diagonal_tiles, out_upper_tiles) with w' K w = w' out_diag + 2 w' out_upper.
    A list of specs gives a list of results from one pass over the Gram tiles
    (one GEMM per tile, one epilogue per spec).
    """
    torch = _torch()
    specs = spec if isinstance(spec, list) else [spec]
    xo = Operand(x, center, precision)
    yo = xo if same else Operand(y, center, precision)
    n, m, q = x.shape[0], y.shape[0], w.shape[1]
    gdtype = xo.values.dtype
    device, stream = _stream(x)
    small = q <= _cuda.gram_contract_max_columns
    wk = w.to(gdtype).contiguous() if small else w.to(torch.float64).contiguous()
    outs = [torch.zeros((n, q), dtype=torch.float64, device=x.device) for _ in specs]
    uppers = [torch.zeros_like(o) for o in outs] if symmetric else None
    tile = GEMM_TILE
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0 if symmetric else 0, m, tile):
            j1 = min(m, j0 + tile)
            g = xo.gram(yo, i0, i1, j0, j1)
            args, is_double = _tile_args(g, xo, yo, i0, j0)
            for k_spec, sp in enumerate(specs):
                target = uppers[k_spec] if (symmetric and j0 > i0) else outs[k_spec]
                if small:
                    _cuda.gram_contract(*args, wk.data_ptr(), q, target.data_ptr(), is_double,
                                        *sp.args(), same, exclude, device, stream)
                else:
                    k = torch.empty(g.shape, dtype=torch.float64, device=x.device)
                    _cuda.gram_kernel_values(*args, k.data_ptr(), k.shape[1], is_double, True,
                                             *sp.args(), same, exclude, device, stream)
                    target[i0:i1].addmm_(k, wk[j0:j1])
    results = list(zip(outs, uppers)) if symmetric else outs
    return results if isinstance(spec, list) else results[0]


def gemm_matrix(x, y, spec, center, same: bool, precision: str):
    """The n x m kernel matrix through cuBLAS Gram row blocks, in the dtype of x."""
    torch = _torch()
    xo = Operand(x, center, precision)
    yo = xo if same else Operand(y, center, precision)
    n, m = x.shape[0], y.shape[0]
    out = torch.empty((n, m), dtype=x.dtype, device=x.device)
    device, stream = _stream(x)
    rows = max(1, min(n, (GEMM_TILE * GEMM_TILE) // max(m, 1)))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        g = xo.gram(yo, i0, i1, 0, m)
        args, is_double = _tile_args(g, xo, yo, i0, 0)
        dst = out[i0:i1]
        _cuda.gram_kernel_values(*args, dst.data_ptr(), m, is_double, x.dtype == torch.float64,
                                 *spec.args(), same, False, device, stream)
    return out


def median_bandwidth(arrays: Sequence[Any], max_points: int, seed: Any) -> float:
    """The CPU rule (same seeded subsample of the pooled rows), computed on the device."""
    torch = _torch()

    counts = [a.shape[0] for a in arrays]
    if sum(counts) < 2:
        return 1.0
    parts = [a.index_select(0, torch.as_tensor(sel, device=a.device)).double()
             for a, sel in zip(arrays, subsample_rows(counts, max_points, seed)) if sel.size]
    z = torch.cat(parts)
    z = z - z.mean(dim=0)
    dist = torch.pdist(z)
    med = median(dist)
    if med > 0:
        return med
    positive = dist[dist > 0]
    return median(positive) if positive.numel() else 1.0


def median(t) -> float:
    """NumPy's median (the mean of the two middle values) of a 1-D tensor, by a
    sort: torch.quantile refuses more than 2^24 values."""
    s = _torch().sort(t.reshape(-1)).values
    k = s.numel()
    return 0.5 * (float(s[(k - 1) // 2]) + float(s[k // 2]))


def _weights(w: Any, n: int, name: str, device) -> Any:
    if w is None:
        return None
    torch = _torch()
    t = w.detach() if hasattr(w, "detach") else torch.as_tensor(np.asarray(w))
    t = t.to(device=device, dtype=torch.float64)
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}; got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    if bool((t < 0).any()):
        raise ValueError(f"{name} must be non-negative")
    total = float(t.sum())
    if not math.isfinite(total):  # huge weights: scaled by a power of two (exact), as on the host
        t = torch.ldexp(t, torch.tensor(-math.frexp(float(t.max()))[1], device=t.device))
        total = float(t.sum())
    if not total > 0:
        raise ValueError(f"{name} are all zero; at least one weight must be positive")
    return t / total


def _uniform(w, n: int, device):
    torch = _torch()
    return torch.full((n,), 1.0 / n, dtype=torch.float64, device=device) if w is None else w


def _self_term(z, w, spec, unbiased: bool, name: str, precision: str):
    """E k(z, z') over distinct pairs (unbiased) or all pairs (biased); an array for a list of specs."""
    s = weighted_self_sum(z, w, spec, _center([z], spec[0] if isinstance(spec, list) else spec),
                          unbiased, precision)
    if not unbiased:
        return s
    return s / _unbiased_norm(w, name)


def _unbiased_norm(w, name: str) -> float:
    norm = 1.0 - float(w @ w)
    if norm <= 1e-12:
        raise ValueError(f"{name}: the unbiased estimator needs positive weight on at least two samples")
    return norm


def _cross_term(x, y, a, b, spec, same: bool, precision: str):
    center = _center([x, y], spec[0] if isinstance(spec, list) else spec)
    out = contract(x, y, b.reshape(-1, 1), spec, center, same, False, precision)
    if isinstance(spec, list):
        return np.array([float(a @ o[:, 0]) for o in out])
    return float(a @ out[:, 0])


def _check_rows(arrays, unbiased: bool) -> None:
    for t, name in arrays:
        if unbiased and t.shape[0] < 2:
            raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")


def _exact_with_stderr(x, y, a, b, spec, unbiased: bool, precision: str) -> tuple[float, float]:
    """The CPU's H-decomposition standard error (mmd._exact_with_stderr) from four
    row-sum contractions on the device."""
    center = _center([x, y], spec)

    def rows(p, q, w, same, exclude):
        return contract(p, q, w.reshape(-1, 1), spec, center, same, exclude, precision)[:, 0]

    rxx, ryy = rows(x, x, a, True, unbiased), rows(y, y, b, True, unbiased)
    rxy, ryx = rows(x, y, b, False, False), rows(y, x, a, False, False)
    na = _unbiased_norm(a, "x_weights") if unbiased else 1.0
    nb = _unbiased_norm(b, "y_weights") if unbiased else 1.0
    f, g = rxx / na - rxy, ryy / nb - ryx
    value = float(a @ rxx) / na + float(b @ ryy) / nb - 2.0 * float(a @ rxy)
    from ..mmd import _weighted_var_of_mean

    var = 4.0 * (_weighted_var_of_mean(f, a) + _weighted_var_of_mean(g, b))
    return value, float(np.sqrt(max(var, 0.0)))


def mmd2_exact(xa, ya, a, b, spec, unbiased: bool, same: bool, precision: str = "highest",
               per_bandwidth: bool = False, return_stderr: bool = False):
    """Exact MMD^2 (unbiased or biased, optionally weighted) on the device, for
    inputs checked by mmd.mmd2 (a, b: normalised float64 weights or None).

    The sums go through the contraction with one column; the weighted dot
    products are taken on the device.  ``per_bandwidth`` gives one value per
    gaussian bandwidth (one pass over the Gram tiles on the GEMM route, one
    per bandwidth on the fused route); ``return_stderr`` adds the CPU's
    first-order standard error (four row-sum contractions).
    """
    ua, ub = _uniform(a, xa.shape[0], xa.device), _uniform(b, ya.shape[0], xa.device)
    from ..mmd import _single

    if return_stderr:
        specs = [_single(spec, s) for s in spec.bandwidths] if per_bandwidth else [spec]
        pairs = [_exact_with_stderr(xa, ya, ua, ub, sp, unbiased, precision) for sp in specs]
        if per_bandwidth:
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        return pairs[0]
    sp = [_single(spec, s) for s in spec.bandwidths] if per_bandwidth else spec
    kxx = _self_term(xa, ua, sp, unbiased, "x_weights", precision)
    kyy = _self_term(ya, ub, sp, unbiased, "y_weights", precision)
    value = kxx + kyy - 2.0 * _cross_term(xa, ya, ua, ub, sp, same, precision)
    return value if per_bandwidth else float(value)


# ---- the block, linear and rff estimators (same draws as on the CPU) ---------------------------

def _kernel_of(d2, g, spec):
    """k from float64 squared distances and inner products (1-D, on the device),
    with the shared per-pair math of simgap/kernel_math.h in float64."""
    torch = _torch()
    d2 = d2.clamp(min=0.0).contiguous()
    g = g.contiguous()
    out = torch.empty_like(d2)
    device, stream = _stream(d2)
    _cuda.kernel_values(d2.data_ptr(), g.data_ptr(), out.data_ptr(), d2.numel(), True, *spec.args(),
                        device, stream)
    return out


def _rowwise(a, b, spec):
    """k(a_i, b_i) for paired rows, distances taken directly in float64 (as the CPU)."""
    a, b = a.double(), b.double()
    return _kernel_of(((a - b) ** 2).sum(dim=1), (a * b).sum(dim=1), spec)


def mmd2_linear(x, y, spec, seed) -> tuple[float, float]:
    """Gretton et al.'s linear-time statistic on the device, the CPU's pairs for the seed."""
    torch = _torch()
    n, m = x.shape[0], y.shape[0]
    npairs = min(n, m) // 2
    rng = np.random.default_rng(seed)
    ix = torch.as_tensor(rng.permutation(n)[: 2 * npairs], device=x.device)
    iy = torch.as_tensor(rng.permutation(m)[: 2 * npairs], device=x.device)
    x1, x2, y1, y2 = x[ix[0::2]], x[ix[1::2]], y[iy[0::2]], y[iy[1::2]]
    h = _rowwise(x1, x2, spec) + _rowwise(y1, y2, spec) - _rowwise(x1, y2, spec) - _rowwise(x2, y1, spec)
    se = float(h.std() / np.sqrt(npairs)) if npairs > 1 else float("nan")
    return float(h.mean()), se


def mmd2_block(x, y, spec, block_size: int, seed) -> tuple[float, float]:
    """The block (incomplete U-) statistic on the device, the CPU's blocks for the seed;
    each block's kernel values from float64 centred Gram products, in chunks of blocks."""
    torch = _torch()
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    nb = min(n, m) // block_size
    rng = np.random.default_rng(seed)
    ix = torch.as_tensor(rng.permutation(n)[: nb * block_size], device=x.device)
    iy = torch.as_tensor(rng.permutation(m)[: nb * block_size], device=x.device)
    center = _center([x, y], spec)
    B = block_size
    per_block = 3 * B * B * 8 * 3 + 2 * B * d * 8
    chunk = max(1, min(nb, (256 << 20) // per_block))
    out = torch.empty(nb, dtype=torch.float64, device=x.device)
    for b0 in range(0, nb, chunk):
        b1 = min(nb, b0 + chunk)
        xb = x[ix[b0 * B:b1 * B]].double().reshape(b1 - b0, B, d)
        yb = y[iy[b0 * B:b1 * B]].double().reshape(b1 - b0, B, d)
        if center is not None:
            xb, yb = xb - center, yb - center

        def ksum(p, q, exclude):
            g = torch.bmm(p, q.transpose(1, 2))
            d2 = (p * p).sum(2)[:, :, None] + (q * q).sum(2)[:, None, :] - 2.0 * g
            k = _kernel_of(d2.reshape(-1), g.reshape(-1), spec).reshape(g.shape)
            if exclude:
                k = k - torch.diag_embed(torch.diagonal(k, dim1=1, dim2=2))
            return k.sum(dim=(1, 2))

        out[b0:b1] = ((ksum(xb, xb, True) + ksum(yb, yb, True)) / (B * (B - 1.0))
                      - 2.0 * ksum(xb, yb, False) / (B * float(B)))
    se = float(out.std() / np.sqrt(nb)) if nb > 1 else float("nan")
    return float(out.mean()), se


def rff_pass(z, w, center, omegas, want_sums=None):
    """mmd._rff_pass with the rows on the device: the same outputs as NumPy
    arrays (per bandwidth the D-length weighted feature sums, or with
    want_sums the (n_bandwidths, 2, n) row projections); w, center, omegas and
    want_sums are the host arrays mmd._rff gives."""
    torch = _torch()
    n, d = z.shape
    D = omegas[0].shape[1]
    dev = z.device
    wz = torch.full((n,), 1.0 / n, dtype=torch.float64, device=dev) if w is None else torch.as_tensor(w, device=dev)
    c = torch.as_tensor(center, device=dev)
    oms = [torch.as_tensor(o, device=dev).to(z.dtype) for o in omegas]
    want = None if want_sums is None else [[(torch.as_tensor(cu, device=dev).to(z.dtype),
                                             torch.as_tensor(su, device=dev).to(z.dtype)) for cu, su in pair]
                                           for pair in want_sums]
    step = max(1, (1 << 22) // max(d, 2 * D))
    sums = [(torch.zeros(D, dtype=torch.float64, device=dev), torch.zeros(D, dtype=torch.float64, device=dev))
            for _ in oms]
    proj = None if want is None else torch.zeros((len(oms), 2, n), dtype=torch.float64, device=dev)
    for s0 in range(0, n, step):
        zc = (z[s0:s0 + step].double() - c).to(z.dtype)
        wk = wz[s0:s0 + step].to(z.dtype)
        for k, om in enumerate(oms):
            with fp32_matmul("ieee"):
                p = zc @ om
            cos, sin = torch.cos(p), torch.sin(p)
            if want is None:
                sums[k][0].add_((wk @ cos).double())
                sums[k][1].add_((wk @ sin).double())
            else:
                for t, (cu, su) in enumerate(want[k]):
                    proj[k, t, s0:s0 + step] = ((cos @ cu + sin @ su) / D).double()
    if want is None:
        return [(u.cpu().numpy(), v.cpu().numpy()) for u, v in sums]
    return proj.cpu().numpy()


def mmd2_batch(x, ys, x_weights, ys_weights, spec_fn, estimator: str | None,
               precision: str = "highest") -> np.ndarray:
    """MMD^2 between x and each set in ys on the device, the x-x term once."""
    torch = _torch()
    xa = as_cuda_matrix(x, "x")
    ya_list = []
    for k, y in enumerate(ys):
        ya = as_cuda_matrix(y, f"ys[{k}]")
        if ya.shape[1] != xa.shape[1]:
            raise ValueError(
                f"x has {xa.shape[1]} columns but ys[{k}] has {ya.shape[1]}; both must have the same number of features"
            )
        ya_list.append(ya)
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in [xa, *ya_list]) else torch.float32
    xa = xa.to(dtype)
    ya_list = [t.to(dtype) for t in ya_list]
    a = _weights(x_weights, xa.shape[0], "x_weights", xa.device)
    b_list = [_weights(None if ys_weights is None else ys_weights[k], t.shape[0], f"ys_weights[{k}]", xa.device)
              for k, t in enumerate(ya_list)]
    weighted = a is not None or any(b is not None for b in b_list)
    unbiased = (estimator or ("biased" if weighted else "unbiased")) in ("unbiased", "exact")
    _check_rows([(xa, "x")] + [(t, f"ys[{k}]") for k, t in enumerate(ya_list)], unbiased)
    spec = spec_fn([xa, *ya_list])
    from ..kernels import fit_kernel_values

    xa, *ya_list = fit_kernel_values(spec, [xa, *ya_list])
    ua = _uniform(a, xa.shape[0], xa.device)
    kxx = _self_term(xa, ua, spec, unbiased, "x_weights", precision)
    out = np.empty(len(ya_list), dtype=np.float64)
    for k, (ya, b) in enumerate(zip(ya_list, b_list)):
        ub = _uniform(b, ya.shape[0], xa.device)
        kyy = _self_term(ya, ub, spec, unbiased, f"ys_weights[{k}]", precision)
        out[k] = kxx + kyy - 2.0 * _cross_term(xa, ya, ua, ub, spec, False, precision)
    return out


def sliced_wasserstein(x, y, theta: np.ndarray, a, b, p: float):
    """W_p^p of the projections of x and y on each column of theta (d x L), on
    the device: per chunk of directions one cuBLAS GEMM of the centred rows
    (IEEE fp32 or fp64), CUB radix sorts (torch.sort with its permutation when
    weighted, to carry the weights), and the exact 1-D distances.  Returns a
    float64 CUDA tensor of length L."""
    torch = _torch()
    xa, ya, _ = cuda_pair(x, y)
    n, m = xa.shape[0], ya.shape[0]
    dtype = xa.dtype
    device, stream = _stream(xa)
    total = xa.sum(dim=0, dtype=torch.float64) + ya.sum(dim=0, dtype=torch.float64)
    center = total / (n + m)
    xo, yo = centred(xa, center, dtype), centred(ya, center, dtype)
    th = torch.as_tensor(np.ascontiguousarray(theta.T), device=xa.device).to(dtype)  # L x d
    L = th.shape[0]
    # Per direction and point: the projected value, its sorted copy and CUB's
    # alternate key buffer; weighted: torch.sort's int64 index, the gathered
    # weights and their cumulative sums (float64).
    per_direction = (n + m) * (3 * xa.element_size() + (24 if (a is not None or b is not None) else 0))
    chunk = int(max(1, min(L, SLICED_CHUNK_BYTES // per_direction)))
    if n < (1 << 16) or m < (1 << 16):  # the segmented sort indexes with int32
        chunk = int(max(1, min(chunk, (2**31 - 1) // max(n, m))))
    out = torch.zeros(L, dtype=torch.float64, device=xa.device)
    for l0 in range(0, L, chunk):
        l1 = min(L, l0 + chunk)
        t = th[l0:l1]
        with fp32_matmul("ieee"):
            px, py = torch.mm(t, xo.t()), torch.mm(t, yo.t())
        wasserstein_rows(px, py, a, b, p, out[l0:l1])
    return out


def wasserstein_rows(px, py, a, b, p: float, out) -> None:
    """out[l] += W_p^p(px[l], py[l]) for the rows of px (L x n) and py (L x m):
    projected values on the device (float32 or float64, one dtype), a / b the
    float64 weights of the n / m points (None: uniform).  CUB radix sorts
    (torch.sort with its permutation when weighted, to carry the weights), then
    the exact 1-D distances; px and py are consumed."""
    torch = _torch()
    device, stream = _stream(px)
    is_double = px.dtype == torch.float64
    n, m = px.shape[1], py.shape[1]

    def sorted_rows(values, w):
        rows, length = values.shape
        if w is not None:
            s, idx = torch.sort(values, dim=1)
            cum = torch.cumsum(w[idx], dim=1)
            return s, cum
        values = values.contiguous()
        s = torch.empty_like(values)
        temp_bytes = int(_cuda.sort_rows_temp_bytes(length, rows, is_double, device))
        temp = torch.empty(max(temp_bytes, 1), dtype=torch.uint8, device=values.device)
        _cuda.sort_rows(values.data_ptr(), s.data_ptr(), length, rows, temp.data_ptr(), temp_bytes,
                        is_double, device, stream)
        return s, None

    sx, cx = sorted_rows(px, a)
    del px
    sy, cy = sorted_rows(py, b)
    del py
    _cuda.wasserstein_1d(sx.data_ptr(), n, 0 if cx is None else cx.data_ptr(), sy.data_ptr(), m,
                         0 if cy is None else cy.data_ptr(), sx.shape[0], float(p),
                         out.data_ptr(), is_double, device, stream)


# ---- k nearest neighbours and ball counts (cuBLAS Gram tiles + torch top-k) ----------------

# Extra candidates kept per row by the Gram-identity pass, re-ranked by exact distances.
_KNN_SLACK = 8


def _sq_dist_tile(xo, xn, yo, yn, i0, i1, j0, j1):
    """Squared distances (float64, clamped at 0) of a tile from an IEEE cuBLAS Gram product."""
    torch = _torch()
    with fp32_matmul("ieee"):
        g = torch.mm(xo[i0:i1], yo[j0:j1].t())
    return (xn[i0:i1, None] + yn[None, j0:j1] - 2.0 * g.double()).clamp_(min=0.0)


def _norms(a):
    return (a.double() ** 2).sum(dim=1)


def knn(x, y, k: int, center, exclude_self: bool):
    """(distances float64 (n, k) ascending, indices int64 (n, k)) of the k nearest rows of y.

    Candidates come from cuBLAS Gram tiles (a running top-(k + 8) per row with
    torch.topk); their distances are then recomputed exactly in float64 from
    the rows (``candidate_distances``: the same arithmetic as the recomputed
    pairs of :func:`radius_stats`, so that a point that is exactly some
    sample's k-th neighbour lies exactly on that sample's ball) and re-ranked,
    ties to the lower index, as on the CPU.
    """
    torch = _torch()
    device, stream = _stream(x)
    same = y is None
    y = x if same else y
    xo = centred(x, center, x.dtype)
    yo = xo if same else centred(y, center, y.dtype)
    xn = _norms(xo)
    yn = xn if same else _norms(yo)
    n, m = x.shape[0], y.shape[0]
    keep = min(k + _KNN_SLACK, m - (1 if exclude_self else 0))
    dist = torch.empty((n, k), dtype=torch.float64, device=x.device)
    index = torch.empty((n, k), dtype=torch.int64, device=x.device)
    tile = GEMM_TILE
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        best_d = torch.full((i1 - i0, 0), float("inf"), dtype=torch.float64, device=x.device)
        best_i = torch.empty((i1 - i0, 0), dtype=torch.int64, device=x.device)
        for j0 in range(0, m, tile):
            j1 = min(m, j0 + tile)
            d2 = _sq_dist_tile(xo, xn, yo, yn, i0, i1, j0, j1)
            if exclude_self and j0 < i1 and i0 < j1:
                rows = torch.arange(max(i0, j0), min(i1, j1), device=x.device)
                d2[rows - i0, rows - j0] = float("inf")
            vals, idx = torch.topk(d2, min(keep, j1 - j0), dim=1, largest=False)
            best_d = torch.cat([best_d, vals], dim=1)
            best_i = torch.cat([best_i, idx + j0], dim=1)
            if best_d.shape[1] > keep:
                best_d, pos = torch.topk(best_d, keep, dim=1, largest=False)
                best_i = torch.gather(best_i, 1, pos)
        # Exact float64 distances of the candidates (the arithmetic of
        # radius_stats's recomputed pairs, to the bit), then (distance, index) order.
        best_i = best_i.contiguous()
        exact = torch.empty(best_i.shape, dtype=torch.float64, device=x.device)
        _cuda.candidate_distances(x.data_ptr(), i0, i1 - i0, y.data_ptr(), m, x.shape[1], best_i.data_ptr(),
                                  best_i.shape[1], exact.data_ptr(), x.dtype == torch.float64, device, stream)
        exact = torch.where(torch.isinf(best_d), float("inf"), exact)  # masked self-pairs stay out
        order = torch.argsort(best_i, dim=1)
        exact, cand = torch.gather(exact, 1, order), torch.gather(best_i, 1, order)
        order = torch.argsort(exact, dim=1, stable=True)
        dist[i0:i1] = torch.gather(exact, 1, order)[:, :k]
        index[i0:i1] = torch.gather(cand, 1, order)[:, :k]
    return dist, index


def radius_band(d: int, is_double: bool) -> float:
    """Half-width of the band around a ball's squared radius, relative to the
    centred ||q||^2 + ||r||^2, in which a Gram-identity squared distance may be
    on the wrong side of the boundary: 4 (d + 2) u (u the unit roundoff), at
    least 1e-4 (float32) or 1e-10 (float64).  The CPU's rule too
    (driver_common.h, radius_band)."""
    u = 2.0**-53 if is_double else 2.0**-24
    return max(1e-10 if is_double else 1e-4, 4.0 * (d + 2) * u)


def radius_stats(queries, refs, radii, center):
    """count[q] = #{j : ||q - r_j|| < radii[j]} and max_ratio[q] = max_j radii[j]^2 / ||q - r_j||^2
    (inf at distance 0, whatever the radius; negative radii are ignored), as
    the CPU kernel.  Distances come from cuBLAS Gram tiles (IEEE, never tf32),
    read by one fused kernel per tile (``gram_radius`` in gram_tile.cu: no host
    synchronisation, no tile-sized temporaries besides the Gram tile).  The
    pairs where the Gram identity loses digits (squared distance below 1/32 of
    the centred ||q||^2 + ||r||^2) or could fall on the wrong side of a ball's
    boundary (within the Gram product's rounding of radii[j]^2) are recomputed
    exactly in float64 from the rows and compared as distances, so a point
    exactly on a boundary is outside it, as the strict definition says."""
    torch = _torch()
    qo, ro = centred(queries, center, queries.dtype), centred(refs, center, refs.dtype)
    qn, rn = _norms(qo), _norms(ro)
    n, m = queries.shape[0], refs.shape[0]
    is_double = queries.dtype == torch.float64
    band = radius_band(queries.shape[1], is_double)
    radii = radii.to(torch.float64).contiguous()
    radii2 = torch.where(radii >= 0, radii * radii, -1.0).contiguous()
    count = torch.zeros(n, dtype=torch.int64, device=queries.device)
    ratio = torch.zeros(n, dtype=torch.float64, device=queries.device)
    device, stream = _stream(queries)
    tile = GEMM_TILE
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(0, m, tile):
            j1 = min(m, j0 + tile)
            with fp32_matmul("ieee"):
                g = torch.mm(qo[i0:i1], ro[j0:j1].t()).contiguous()
            _cuda.gram_radius(g.data_ptr(), g.shape[1], i1 - i0, j1 - j0, i0, j0, qn.data_ptr(),
                              rn.data_ptr(), queries.data_ptr(), refs.data_ptr(), queries.shape[1],
                              radii.data_ptr(), radii2.data_ptr(), band, count.data_ptr(),
                              ratio.data_ptr(), is_double, device, stream)
    return count, ratio


def mean_cov(x):
    """Mean and sample covariance (ddof = 1) in float64 on the device, in row chunks."""
    torch = _torch()
    n, d = x.shape
    mu = x.sum(dim=0, dtype=torch.float64) / n
    cov = torch.zeros((d, d), dtype=torch.float64, device=x.device)
    step = max(1, (1 << 22) // d)
    for s in range(0, n, step):
        c = x[s:s + step].double() - mu
        cov.addmm_(c.t(), c)
    return mu, cov / (n - 1)


def device_pair(x: Any, y: Any, xname: str, yname: str, allow_empty: bool = False):
    """Two CUDA tensors as checked matrices of one dtype (float32 with float64: float64)."""
    xd = as_cuda_matrix(x, xname, allow_empty=allow_empty)
    yd = as_cuda_matrix(y, yname, allow_empty=allow_empty)
    if xd.shape[1] != yd.shape[1]:
        raise ValueError(f"{xname} has {xd.shape[1]} columns but {yname} has {yd.shape[1]}; "
                         "both must have the same number of features")
    if xd.dtype != yd.dtype:
        xd, yd = xd.double(), yd.double()
    return xd, yd
