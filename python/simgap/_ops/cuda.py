"""The CUDA side of the compute primitives: torch CUDA tensors in, CUDA
tensors (arrays) or Python floats (scalars) out, work queued on the caller's
current stream, no copy of the data to the host.

This module holds the fused route (``kernel_contract.cu``, ``kernel_matrix.cu``:
Gram tile, kernel and contraction in one kernel, the tile never leaving
registers; for few features, where memory traffic dominates) and the
operations that have one CUDA implementation: row-wise kernel values, the
block estimator's blocks, random Fourier features, k-NN and ball statistics
from cuBLAS Gram tiles, sliced Wasserstein, moments.  The cuBLAS-GEMM tile
route and the tensor-core route are in :mod:`simgap._ops.cuda_routes`; which
route runs is decided in :mod:`simgap._ops.dispatch`.  The compiled module is
:data:`simgap._ops.backend.CUDA`, read at each launch.

Inputs are checked CUDA tensors (:mod:`simgap._ops.inputs`) of one dtype;
``spec`` is a :class:`~simgap._ops.spec.KernelSpec`; ``center`` a float64
device tensor subtracted before Gram products (distance kernels) or None.
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

from . import backend

__all__ = ["GEMM_TILE", "SLICED_CHUNK_BYTES", "stream_of", "kernel_args", "fp32_matmul", "centred",
           "pooled_mean", "ones", "kernel_contract", "kernel_matrix", "kernel_values", "kernel_rowwise",
           "mmd_blocks", "rff_sums", "sliced_wasserstein", "wasserstein_rows", "knn", "radius_band",
           "radius_stats", "mean_cov", "pair_distances", "median"]

# Side of the square Gram tiles of the GEMM route, the k-NN and the ball
# statistics (4096^2 fp32 = 64 MiB; a float64 kernel tile for many-column
# contractions is 128 MiB).
GEMM_TILE = 4096
# Rows centred (through float64) per step when the operands are prepared.
_PREP_ROWS = 1 << 15
# Bytes of projected values (and their sorted copy) per chunk of directions.
SLICED_CHUNK_BYTES = 1 << 30
# Extra candidates kept per row by the Gram-identity pass of knn, re-ranked by exact distances.
_KNN_SLACK = 8


def _torch():
    import torch

    return torch


def stream_of(t) -> tuple[int, int]:
    """(device index, current stream handle) of a CUDA tensor: where its work is queued."""
    torch = _torch()
    return t.device.index, torch.cuda.current_stream(t.device).cuda_stream


def kernel_args(spec) -> dict:
    """The kernel's keyword arguments of the CUDA bindings (kernel, scales,
    gamma, coef0, degree: ``spec.args()`` by name)."""
    return dict(zip(("kernel", "scales", "gamma", "coef0", "degree"), spec.args()))


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


def pooled_mean(arrays: Sequence[Any]):
    """Mean of all rows of all arrays, accumulated in float64 on the device."""
    torch = _torch()
    total = sum(a.sum(dim=0, dtype=torch.float64) for a in arrays)
    return (total / sum(a.shape[0] for a in arrays)).contiguous()


def ones(a):
    """float64 ones, one per row of a, on its device (unit weights)."""
    torch = _torch()
    return torch.ones(a.shape[0], dtype=torch.float64, device=a.device)


# ---- the fused route ---------------------------------------------------------------------------

def _norms_and_center(x, y, center):
    """Per-row float64 norm buffers the fused kernels fill, and the centre's pointer."""
    torch = _torch()
    xn = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    yn = torch.empty(y.shape[0], dtype=torch.float64, device=x.device)
    return xn, yn, 0 if center is None else center.data_ptr()


def kernel_contract(x, y, w, spec, center, same: bool, exclude: bool, symmetric: bool = False):
    """out (n x q, float64) = K(x, y) @ w by the fused kernel (w: (m, q)).

    With ``symmetric`` (x is y, and the caller only needs w' K w) only the
    tiles on and above the diagonal are evaluated and the result is a pair
    (out, upper) with w' K w = w' out + 2 w' upper.
    """
    torch = _torch()
    w = w.to(x.dtype).contiguous()
    out = torch.zeros((x.shape[0], w.shape[1]), dtype=torch.float64, device=x.device)
    upper = torch.zeros_like(out) if symmetric else None
    xn, yn, c = _norms_and_center(x, y, center)
    device, stream = stream_of(x)
    backend.CUDA.kernel_contract(x=x.data_ptr(), n=x.shape[0], y=y.data_ptr(), m=y.shape[0], d=x.shape[1],
                                 w=w.data_ptr(), q=w.shape[1], out=out.data_ptr(), xn=xn.data_ptr(),
                                 yn=yn.data_ptr(), center=c, is_double=x.dtype == torch.float64,
                                 **kernel_args(spec), same=same, exclude=exclude, device=device, stream=stream,
                                 upper=0 if upper is None else upper.data_ptr())
    return (out, upper) if symmetric else out


def kernel_matrix(x, y, spec, center, same: bool):
    """The n x m kernel matrix by the fused kernel, in the dtype of x."""
    torch = _torch()
    out = torch.empty((x.shape[0], y.shape[0]), dtype=x.dtype, device=x.device)
    xn, yn, c = _norms_and_center(x, y, center)
    device, stream = stream_of(x)
    backend.CUDA.kernel_matrix(x=x.data_ptr(), n=x.shape[0], y=y.data_ptr(), m=y.shape[0], d=x.shape[1],
                               out=out.data_ptr(), xn=xn.data_ptr(), yn=yn.data_ptr(), center=c,
                               is_double=x.dtype == torch.float64, **kernel_args(spec), same=same,
                               device=device, stream=stream)
    return out


# ---- row-wise kernel values, the block estimator's blocks, random features ---------------------

def kernel_values(d2, g, spec):
    """k from float64 squared distances and inner products (1-D, on the device),
    with the shared per-pair math of simgap/kernel_math.h in float64."""
    torch = _torch()
    d2 = d2.clamp(min=0.0).contiguous()
    g = g.contiguous()
    out = torch.empty_like(d2)
    device, stream = stream_of(d2)
    backend.CUDA.kernel_values(d2=d2.data_ptr(), g=g.data_ptr(), out=out.data_ptr(), n=d2.numel(), is_double=True,
                               **kernel_args(spec), device=device, stream=stream)
    return out


def kernel_rowwise(a, b, spec):
    """k(a_i, b_i) for paired rows, distances taken directly in float64 (as the CPU)."""
    a, b = a.double(), b.double()
    return kernel_values(((a - b) ** 2).sum(dim=1), (a * b).sum(dim=1), spec)


def mmd_blocks(x, y, ix, iy, block_size: int, spec, center):
    """The unbiased MMD^2 of each block of rows (the CPU's blocks for the same
    indices): kernel values from float64 centred Gram products, in chunks of
    blocks.  A float64 device tensor of length len(ix) // block_size."""
    torch = _torch()
    d = x.shape[1]
    B = block_size
    nb = len(ix) // B
    ix = torch.as_tensor(ix, device=x.device)
    iy = torch.as_tensor(iy, device=x.device)
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
            k = kernel_values(d2.reshape(-1), g.reshape(-1), spec).reshape(g.shape)
            if exclude:
                k = k - torch.diag_embed(torch.diagonal(k, dim1=1, dim2=2))
            return k.sum(dim=(1, 2))

        out[b0:b1] = ((ksum(xb, xb, True) + ksum(yb, yb, True)) / (B * (B - 1.0))
                      - 2.0 * ksum(xb, yb, False) / (B * float(B)))
    return out


def rff_sums(z, w, center, omegas, want_sums=None, *, chunk_elements: int):
    """:func:`simgap._ops.cpu.rff_sums` with the rows on the device: the same
    outputs as NumPy arrays (per bandwidth the D-length weighted feature sums,
    or with want_sums the (n_bandwidths, 2, n) row projections); w, center,
    omegas and want_sums are host arrays."""
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
    step = max(1, chunk_elements // max(d, 2 * D))
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


# ---- sliced Wasserstein --------------------------------------------------------------------------

def sliced_wasserstein(x, y, theta: np.ndarray, a, b, p: float, center):
    """W_p^p of the projections of x and y on each column of theta (d x L), on
    the device: per chunk of directions one cuBLAS GEMM of the centred rows
    (IEEE fp32 or fp64), CUB radix sorts (torch.sort with its permutation when
    weighted, to carry the weights), and the exact 1-D distances.  Returns a
    float64 CUDA tensor of length L."""
    torch = _torch()
    n, m = x.shape[0], y.shape[0]
    dtype = x.dtype
    xo, yo = centred(x, center, dtype), centred(y, center, dtype)
    th = torch.as_tensor(np.ascontiguousarray(theta.T), device=x.device).to(dtype)  # L x d
    L = th.shape[0]
    # Per direction and point: the projected value, its sorted copy and CUB's
    # alternate key buffer; weighted: torch.sort's int64 index, the gathered
    # weights and their cumulative sums (float64).
    per_direction = (n + m) * (3 * x.element_size() + (24 if (a is not None or b is not None) else 0))
    chunk = int(max(1, min(L, SLICED_CHUNK_BYTES // per_direction)))
    if n < (1 << 16) or m < (1 << 16):  # the segmented sort indexes with int32
        chunk = int(max(1, min(chunk, (2**31 - 1) // max(n, m))))
    out = torch.zeros(L, dtype=torch.float64, device=x.device)
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
    device, stream = stream_of(px)
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
        temp_bytes = int(backend.CUDA.sort_rows_temp_bytes(length, rows, is_double, device))
        temp = torch.empty(max(temp_bytes, 1), dtype=torch.uint8, device=values.device)
        backend.CUDA.sort_rows(inp=values.data_ptr(), out=s.data_ptr(), length=length, rows=rows,
                               temp=temp.data_ptr(), temp_bytes=temp_bytes, is_double=is_double, device=device,
                               stream=stream)
        return s, None

    sx, cx = sorted_rows(px, a)
    del px
    sy, cy = sorted_rows(py, b)
    del py
    backend.CUDA.wasserstein_1d(u=sx.data_ptr(), n=n, cu=0 if cx is None else cx.data_ptr(), v=sy.data_ptr(), m=m,
                                cv=0 if cy is None else cy.data_ptr(), rows=sx.shape[0], p=float(p),
                                out=out.data_ptr(), is_double=is_double, device=device, stream=stream)


# ---- k nearest neighbours and ball counts (cuBLAS Gram tiles + torch top-k) ----------------------

def _sq_dist_tile(xo, xn, yo, yn, i0, i1, j0, j1):
    """Squared distances (float64, clamped at 0) of a tile from an IEEE cuBLAS Gram product."""
    torch = _torch()
    with fp32_matmul("ieee"):
        g = torch.mm(xo[i0:i1], yo[j0:j1].t())
    return (xn[i0:i1, None] + yn[None, j0:j1] - 2.0 * g.double()).clamp_(min=0.0)


def _norms(a):
    return (a.double() ** 2).sum(dim=1)


def knn(x, y, k: int, center):
    """(distances float64 (n, k) ascending, indices int64 (n, k)) of the k nearest
    rows of y (None: of x, each row excluded from its own neighbours).

    Candidates come from cuBLAS Gram tiles (a running top-(k + 8) per row with
    torch.topk); their distances are then recomputed exactly in float64 from
    the rows (``candidate_distances``: the same arithmetic as the recomputed
    pairs of :func:`radius_stats`, so that a point that is exactly some
    sample's k-th neighbour lies exactly on that sample's ball) and re-ranked,
    ties to the lower index, as on the CPU.
    """
    torch = _torch()
    device, stream = stream_of(x)
    same = y is None
    exclude_self = same
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
        backend.CUDA.candidate_distances(x=x.data_ptr(), row0=i0, rows=i1 - i0, y=y.data_ptr(), m=m,
                                         d=x.shape[1], cand=best_i.data_ptr(), c=best_i.shape[1],
                                         out=exact.data_ptr(), is_double=x.dtype == torch.float64,
                                         device=device, stream=stream)
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
    read by one fused kernel per tile (``gram_radius``: no host
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
    device, stream = stream_of(queries)
    tile = GEMM_TILE
    for i0 in range(0, n, tile):
        i1 = min(n, i0 + tile)
        for j0 in range(0, m, tile):
            j1 = min(m, j0 + tile)
            with fp32_matmul("ieee"):
                g = torch.mm(qo[i0:i1], ro[j0:j1].t()).contiguous()
            backend.CUDA.gram_radius(gram=g.data_ptr(), ld=g.shape[1], rows=i1 - i0, cols=j1 - j0, row0=i0,
                                     col0=j0, xn=qn.data_ptr(), yn=rn.data_ptr(), x=queries.data_ptr(),
                                     y=refs.data_ptr(), d=queries.shape[1], radii=radii.data_ptr(),
                                     radii2=radii2.data_ptr(), band=band, count=count.data_ptr(),
                                     max_ratio=ratio.data_ptr(), is_double=is_double, device=device,
                                     stream=stream)
    return count, ratio


# ---- moments, the median heuristic's distances, medians --------------------------------------------

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


def pair_distances(parts: Sequence[Any]):
    """The distances ||z_i - z_j||, i < j, of the rows of the parts pooled
    (float64, centred first; torch.pdist), on the device."""
    torch = _torch()
    z = torch.cat([p.double() for p in parts])
    z = z - z.mean(dim=0)
    return torch.pdist(z)


def median(t) -> float:
    """NumPy's median (the mean of the two middle values) of a 1-D tensor, by a
    sort: torch.quantile refuses more than 2^24 values."""
    s = _torch().sort(t.reshape(-1)).values
    k = s.numel()
    return 0.5 * (float(s[(k - 1) // 2]) + float(s[k // 2]))
