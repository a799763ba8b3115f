"""The CUDA path of the distance functions: torch CUDA tensors in, CUDA tensors
(arrays) or Python floats (scalars) out, work queued on the caller's current
stream, no copy of the data to the host.  Validation mirrors the CPU path
(_validation.py) with torch operations on the device.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._backend import _cuda

__all__ = ["as_cuda_matrix", "kernel_contract", "kernel_matrix", "median_bandwidth", "mmd2"]


def _torch():
    import torch

    return torch


def as_cuda_matrix(t: Any, name: str):
    """A contiguous 2-D float32/float64 CUDA tensor (copied only when needed)."""
    torch = _torch()
    if t.is_complex():
        raise TypeError(f"{name} has complex dtype {t.dtype}; expected real floating point")
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif t.dtype not in (torch.float32, torch.float64):
        if t.dtype.is_floating_point:
            t = t.double()
        elif t.dtype == torch.bool or not t.dtype.is_floating_point:
            t = t.double()
    if t.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {t.dim()}-D with shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows; at least one sample is needed")
    if t.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least one feature is needed")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")
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


def contract(x, y, w, spec, center, same: bool, exclude: bool):
    """out (n x q, float64) = K(x, y) @ w on the device (w: (m, q), dtype of x)."""
    torch = _torch()
    w = w.to(x.dtype).contiguous()
    out = torch.zeros((x.shape[0], w.shape[1]), dtype=torch.float64, device=x.device)
    xn, yn, c = _common(x, y, spec, center)
    device, stream = _stream(x)
    _cuda.kernel_contract(x.data_ptr(), x.shape[0], y.data_ptr(), y.shape[0], x.shape[1],
                          w.data_ptr(), w.shape[1], out.data_ptr(), xn.data_ptr(), yn.data_ptr(),
                          c, x.dtype == torch.float64, *spec.args(), same, exclude, device, stream)
    return out


def kernel_matrix(x, y, spec, same: bool):
    torch = _torch()
    out = torch.empty((x.shape[0], y.shape[0]), dtype=x.dtype, device=x.device)
    center = _center([x] if same else [x, y], spec)
    xn, yn, c = _common(x, y, spec, center)
    device, stream = _stream(x)
    _cuda.kernel_matrix(x.data_ptr(), x.shape[0], y.data_ptr(), y.shape[0], x.shape[1],
                        out.data_ptr(), xn.data_ptr(), yn.data_ptr(), c,
                        x.dtype == torch.float64, *spec.args(), same, device, stream)
    return out


def kernel_contract(x, y, w, spec, same: bool):
    center = _center([x] if same else [x, y], spec)
    return contract(x, y, w, spec, center, same, False)


def median_bandwidth(arrays: Sequence[Any], max_points: int, seed: Any) -> float:
    """The CPU rule (same seeded subsample of the pooled rows), computed on the device."""
    torch = _torch()
    from .kernels import subsample_rows

    counts = [a.shape[0] for a in arrays]
    if sum(counts) < 2:
        return 1.0
    parts = [a.index_select(0, torch.as_tensor(sel, device=a.device)).double()
             for a, sel in zip(arrays, subsample_rows(counts, max_points, seed)) if sel.size]
    z = torch.cat(parts)
    z = z - z.mean(dim=0)
    dist = torch.pdist(z)
    med = float(torch.quantile(dist, 0.5))
    if med > 0:
        return med
    positive = dist[dist > 0]
    return float(torch.quantile(positive, 0.5)) if positive.numel() else 1.0


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
    if not total > 0:
        raise ValueError(f"{name} are all zero; at least one weight must be positive")
    return t / total


def mmd2(x, y, x_weights, y_weights, spec_fn, estimator: str | None) -> float:
    """Exact MMD^2 (unbiased or biased, optionally weighted) on the device.

    spec_fn(arrays) resolves the kernel (the median bandwidth needs the data).
    The sums go through the fused contraction with one column; the weighted dot
    products are taken on the device.
    """
    torch = _torch()
    xa, ya, same = cuda_pair(x, y)
    a = _weights(x_weights, xa.shape[0], "x_weights", xa.device)
    b = _weights(y_weights, ya.shape[0], "y_weights", xa.device)
    est = estimator or ("biased" if (a is not None or b is not None) else "unbiased")
    est = "unbiased" if est == "exact" else est
    if est not in ("unbiased", "biased"):
        raise NotImplementedError(
            f"estimator={estimator!r} has no CUDA implementation yet; pass CPU arrays (tensor.cpu())"
        )
    unbiased = est == "unbiased"
    for t, name in ((xa, "x"), (ya, "y")):
        if unbiased and t.shape[0] < 2:
            raise ValueError(f"{name} has 1 row; the unbiased estimator needs at least 2 (use estimator='biased')")
    spec = spec_fn([xa, ya])

    def uniform(w, n):
        return torch.full((n,), 1.0 / n, dtype=torch.float64, device=xa.device) if w is None else w

    ua, ub = uniform(a, xa.shape[0]), uniform(b, ya.shape[0])

    def self_term(z, w, name):
        center = _center([z], spec)
        s = float(w @ contract(z, z, w.reshape(-1, 1), spec, center, True, unbiased)[:, 0])
        if not unbiased:
            return s
        norm = 1.0 - float(w @ w)
        if norm <= 1e-12:
            raise ValueError(f"{name}: the unbiased estimator needs positive weight on at least two samples")
        return s / norm

    kxx = self_term(xa, ua, "x_weights")
    kyy = self_term(ya, ub, "y_weights")
    center = _center([xa, ya], spec)
    kxy = float(ua @ contract(xa, ya, ub.reshape(-1, 1), spec, center, same, False)[:, 0])
    return kxx + kyy - 2.0 * kxy
