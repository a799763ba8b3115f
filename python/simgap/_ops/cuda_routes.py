"""The two CUDA routes beside the fused one (:mod:`simgap._ops.cuda`), chosen
by :mod:`simgap._ops.dispatch`:

* the GEMM route (``kernel_contract_gemm.cu``, ``kernel_matrix_gemm.cu``): the
  Gram tile X_i Y_j^T of the centred rows by cuBLAS (``torch.mm`` on the
  current stream: torch's CUDA build ships cuBLAS, so the build needs no
  cuBLAS of its own) into a bounded workspace, then one fused kernel that
  applies the kernel and contracts with up to 8 weight columns in float64
  (more columns: kernel values, then a float64 GEMM).  It is taken for many
  features and for the tensor-core precisions;
* the fused tensor-core route (``kernel_contract_tc.cu``: WMMA Gram tiles kept
  in shared memory), behind its flag (``dispatch.TC_MAX_FEATURES``).

``precision``: "highest" multiplies in the input precision (IEEE fp32, never
tf32, or fp64); "tf32" and "bf16" round the centred inputs to tf32 (10-bit
mantissa) or bf16 (7-bit) once, compute their squared norms from the rounded
values in float64 and multiply on tensor cores with fp32 accumulation, so the
squared distances are those of the rounded points up to fp32 accumulation.

Both routes return what :func:`simgap._ops.cuda.kernel_contract` returns:
pairs (diagonal tiles, upper tiles) with ``symmetric``, and a list of results
for a list of specs (one pass over the Gram tiles on the GEMM route).
"""

from __future__ import annotations

from . import backend, cuda

__all__ = ["Operand", "round_tf32", "gemm_contract", "gemm_matrix", "tc_contract"]


def _torch():
    import torch

    return torch


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


class Operand:
    """One side of a GEMM-route product: the centred rows rounded as the
    precision says (``values``, float32 or float64), their float64 squared
    norms, the tensor the GEMM reads (``gemm``: ``values`` or a bf16 copy), and
    the original rows for exact near-duplicate distances (None below highest)."""

    def __init__(self, a, center, precision: str):
        torch = _torch()
        highest = precision == "highest"
        values = cuda.centred(a, center, a.dtype if highest else torch.float32)
        if precision == "tf32":
            values = round_tf32(values)
        elif precision == "bf16":
            values = values.to(torch.bfloat16).float()
        self.values = values
        self.norms = torch.empty(a.shape[0], dtype=torch.float64, device=a.device)
        device, stream = cuda.stream_of(a)
        backend.CUDA.row_norms(x=values.data_ptr(), n=a.shape[0], d=a.shape[1], out=self.norms.data_ptr(),
                               is_double=values.dtype == torch.float64, device=device, stream=stream)
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
            with cuda.fp32_matmul(self.mode):
                g = torch.mm(a, b)
        return g if g.is_contiguous() else g.contiguous()  # the epilogues read it row-major


def _tile_args(g, xo: Operand, yo: Operand, i0: int, j0: int) -> dict:
    """The Gram tile's keyword arguments of gram_contract and gram_kernel_values
    (gram, ld, rows, cols, row0, col0, xn, yn, x, y, d, is_double)."""
    torch = _torch()
    return dict(gram=g.data_ptr(), ld=g.shape[1], rows=g.shape[0], cols=g.shape[1], row0=i0, col0=j0,
                xn=xo.norms.data_ptr(), yn=yo.norms.data_ptr(), x=0 if xo.rows is None else xo.rows.data_ptr(),
                y=0 if yo.rows is None else yo.rows.data_ptr(), d=xo.values.shape[1],
                is_double=g.dtype == torch.float64)


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
    device, stream = cuda.stream_of(x)
    small = q <= backend.CUDA.gram_contract_max_columns
    wk = w.to(gdtype).contiguous() if small else w.to(torch.float64).contiguous()
    outs = [torch.zeros((n, q), dtype=torch.float64, device=x.device) for _ in specs]
    uppers = [torch.zeros_like(o) for o in outs] if symmetric else None
    tile = cuda.GEMM_TILE
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(i0 if symmetric else 0, m, tile):
            j1 = min(m, j0 + tile)
            g = xo.gram(yo, i0, i1, j0, j1)
            gram_tile = _tile_args(g, xo, yo, i0, j0)
            for k_spec, sp in enumerate(specs):
                target = uppers[k_spec] if (symmetric and j0 > i0) else outs[k_spec]
                if small:
                    backend.CUDA.gram_contract(**gram_tile, w=wk.data_ptr(), q=q, out=target.data_ptr(),
                                               **cuda.kernel_args(sp), same=same, exclude=exclude, device=device,
                                               stream=stream)
                else:
                    k = torch.empty(g.shape, dtype=torch.float64, device=x.device)
                    backend.CUDA.gram_kernel_values(**gram_tile, out=k.data_ptr(), ld_out=k.shape[1],
                                                    out_double=True, **cuda.kernel_args(sp), same=same,
                                                    exclude=exclude, device=device, stream=stream)
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
    device, stream = cuda.stream_of(x)
    rows = max(1, min(n, (cuda.GEMM_TILE * cuda.GEMM_TILE) // max(m, 1)))
    for i0 in range(0, n, rows):
        i1 = min(n, i0 + rows)
        g = xo.gram(yo, i0, i1, 0, m)
        dst = out[i0:i1]
        backend.CUDA.gram_kernel_values(**_tile_args(g, xo, yo, i0, 0), out=dst.data_ptr(), ld_out=m,
                                        out_double=x.dtype == torch.float64, **cuda.kernel_args(spec), same=same,
                                        exclude=False, device=device, stream=stream)
    return out


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
    device, stream = cuda.stream_of(x)
    results = []
    for sp in specs:
        out = torch.zeros((n, q), dtype=torch.float64, device=x.device)
        upper = torch.zeros_like(out) if symmetric else None
        backend.CUDA.contract_tc(x=xin.data_ptr(), n=n, y=yin.data_ptr(), m=m, d=x.shape[1], bf16=bf16,
                                 xn=xo.norms.data_ptr(), yn=yo.norms.data_ptr(), w=wk.data_ptr(), q=q,
                                 out=out.data_ptr(), upper=0 if upper is None else upper.data_ptr(),
                                 **cuda.kernel_args(sp), same=same, exclude=exclude, device=device, stream=stream)
        results.append((out, upper) if symmetric else out)
    return results if isinstance(spec, list) else results[0]
