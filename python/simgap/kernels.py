"""Kernels, the median bandwidth, and the fused kernel contraction.

Every kernel is a function of the Euclidean distance or of the inner product
between two rows; sigma is the bandwidth:

===============  ====================================  =========================
name             k(x, y)                               parameters
===============  ====================================  =========================
``gaussian``     exp(-||x-y||^2 / (2 sigma^2))         sigma (a list sums kernels)
``laplacian``    exp(-||x-y|| / sigma)                 sigma
``imq``          (1 + ||x-y||^2 / sigma^2)^(-1/2)      sigma
``polynomial``   (gamma <x, y> + coef0)^degree         gamma=1/d, coef0=1, degree=3
``linear``       <x, y>                                none
``energy``       -||x-y||                              none
===============  ====================================  =========================

With the ``energy`` kernel, the MMD^2 (biased, V-statistic) equals the energy
distance of Szekely and Rizzo; the ``polynomial`` defaults are the KID kernel
of Binkowski et al. (2018).  The polynomial kernel's values are unbounded:
float32 inputs are computed in float64 when a bound on them,
(gamma max ||x||^2 + |coef0|)^degree, passes 1e35, and a bound past 1e300
raises ValueError.  float32 inputs whose largest magnitude lies outside
1e-15 .. 1e15 are computed in float64 as well (``simgap._ops.inputs.as_matrix``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _C
from ._ops.backend import check_precision, device_of
from ._ops.inputs import as_matrix, cast, check_same_features, common_dtype, pooled_mean, same_memory
from ._util.checks import as_positive_int, as_real, check_seed, subsample_rows

__all__ = ["KERNELS", "kernel_matrix", "kernel_contract", "median_bandwidth"]

KERNELS = ("gaussian", "laplacian", "imq", "polynomial", "linear", "energy")
_BANDWIDTH_KERNELS = ("gaussian", "laplacian", "imq")
_DISTANCE_KERNELS = ("gaussian", "laplacian", "imq", "energy")
_MAX_BANDWIDTHS = 32


@dataclass(frozen=True)
class KernelSpec:
    """A resolved kernel: what the compiled code receives."""

    name: str
    bandwidths: tuple[float, ...]
    gamma: float
    coef0: float
    degree: int

    @property
    def code(self) -> int:
        return int(_C.kernel_types[self.name])

    @property
    def uses_distance(self) -> bool:
        return self.name in _DISTANCE_KERNELS

    @property
    def scales(self) -> list[float]:
        """Per-bandwidth scale factors the kernel math multiplies by."""
        if self.name == "gaussian":
            return [1.0 / (2.0 * s * s) for s in self.bandwidths]
        if self.name == "laplacian":
            return [1.0 / self.bandwidths[0]]
        if self.name == "imq":
            return [1.0 / (self.bandwidths[0] ** 2)]
        return [1.0]

    def args(self) -> tuple:
        return (self.code, self.scales, self.gamma, self.coef0, self.degree)


# The polynomial kernel's values are unbounded.  Tiles hold float32 kernel
# values and float32 partial sums of a few hundred of them, so float32 inputs
# are computed in float64 once a bound on the values passes 1e35; past 1e300
# the values overflow float64 itself, which raises.
_FLOAT32_VALUES_LOG10 = 35.0
_FLOAT64_VALUES_LOG10 = 300.0


def _max_sq_norm(a: Any) -> float:
    """The largest squared row norm of a NumPy array or a tensor, in float64, in
    chunks of rows (no full-size temporary)."""
    rows, d = a.shape[0], a.shape[1]
    if rows == 0:
        return 0.0
    step = max(1, (1 << 22) // max(1, d))
    if hasattr(a, "detach"):  # a torch tensor: reduced on its device, one host sync
        import torch

        parts = [(c * c).sum(dim=1).max() for c in (a[s : s + step].double() for s in range(0, rows, step))]
        return float(torch.stack(parts).max())
    best = 0.0
    for s in range(0, rows, step):
        c = np.asarray(a[s : s + step], dtype=np.float64)
        best = max(best, float(np.einsum("ij,ij->i", c, c).max()))
    return best


def values_log10_bound(spec: KernelSpec, arrays: Sequence[Any]) -> float:
    """log10 of a bound on |k(a, b)| over all pairs of rows of ``arrays``: for the
    polynomial kernel (gamma max ||a||^2 + |coef0|)^degree (Cauchy-Schwarz;
    reached on the diagonal), 0 for the others (|k| <= 1, or the distances and
    inner products that ``FLOAT32_MAGNITUDE`` keeps in range)."""
    if spec.name != "polynomial":
        return 0.0
    base = abs(spec.gamma) * max((_max_sq_norm(a) for a in arrays), default=0.0) + abs(spec.coef0)
    return spec.degree * math.log10(base) if base > 0 else -math.inf


def check_values_bound(log10: float) -> None:
    if log10 > _FLOAT64_VALUES_LOG10:
        raise ValueError(
            f"the polynomial kernel's values reach about 1e{log10:.0f} on these inputs "
            "((gamma * max ||x||^2 + |coef0|)^degree), beyond float64; scale the data, or lower gamma or degree"
        )


def needs_float64_values(log10: float) -> bool:
    """Whether kernel values bounded by 10**log10 overflow float32 tiles (raises
    beyond float64)."""
    check_values_bound(log10)
    return log10 > _FLOAT32_VALUES_LOG10


def fit_kernel_values(spec: KernelSpec, arrays: Sequence[Any]) -> list:
    """``arrays`` in a dtype that holds the kernel's values: float32 ones become
    float64 where the polynomial kernel's values would overflow float32 (the
    same object twice stays one object); ValueError where they overflow
    float64."""
    arrays = list(arrays)
    if not needs_float64_values(values_log10_bound(spec, arrays)):
        return arrays
    done: dict[int, Any] = {}
    out = []
    for a in arrays:
        if id(a) not in done:
            if hasattr(a, "detach"):
                done[id(a)] = a.double()
            else:
                done[id(a)] = a if a.dtype == np.float64 else a.astype(np.float64)
        out.append(done[id(a)])
    return out


def check_kernel(kernel: Any) -> str:
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a string, one of {KERNELS}; got {type(kernel).__name__}")
    name = kernel.lower()
    if name not in KERNELS:
        raise ValueError(f"kernel {kernel!r} is unknown; expected one of {', '.join(KERNELS)}")
    return name


def _bandwidth_values(bandwidth: Any, kernel: str) -> tuple[float, ...] | None:
    """Numeric bandwidths, or None for "median"."""
    if isinstance(bandwidth, str):
        if bandwidth.lower() != "median":
            raise ValueError(f"bandwidth must be 'median', a positive number or a list; got {bandwidth!r}")
        return None
    if isinstance(bandwidth, bool):
        raise TypeError("bandwidth must be 'median', a positive number or a list of positive numbers")
    if isinstance(bandwidth, numbers.Real):
        values: tuple[float, ...] = (float(bandwidth),)
    else:
        try:
            arr = np.asarray(bandwidth)
        except Exception:
            raise TypeError("bandwidth must be 'median', a positive number or a list of positive numbers") from None
        if arr.dtype.kind not in "iuf" or arr.ndim != 1:
            raise TypeError("bandwidth must be 'median', a positive number or a 1-D list of positive numbers")
        if arr.size == 0:
            raise ValueError("bandwidth list is empty")
        values = tuple(float(v) for v in arr)
        if len(values) > 1 and kernel != "gaussian":
            raise ValueError(f"bandwidth: a list of bandwidths is only supported by the gaussian kernel, not {kernel}")
        if len(values) > _MAX_BANDWIDTHS:
            raise ValueError(f"bandwidth: at most {_MAX_BANDWIDTHS} bandwidths are supported, got {len(values)}")
    for v in values:
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"bandwidth must be positive and finite; got {v}")
    return values


def resolve_kernel(
    kernel: Any,
    bandwidth: Any,
    gamma: Any,
    coef0: Any,
    degree: Any,
    arrays: Sequence[np.ndarray],
    *,
    max_points: int = 2000,
    seed: int = 0,
    median_fn: Any = None,
) -> KernelSpec:
    """Check the kernel options and compute the median bandwidth when asked
    (with ``median_fn(arrays, max_points, seed)`` for device arrays)."""
    name = check_kernel(kernel)
    d = arrays[0].shape[1]
    bandwidths: tuple[float, ...] = ()
    if name in _BANDWIDTH_KERNELS:
        values = _bandwidth_values(bandwidth, name)
        median = median_fn or _median_of
        bandwidths = values if values is not None else (median(arrays, max_points, seed),)
    else:
        if not (isinstance(bandwidth, str) and bandwidth.lower() == "median") and bandwidth is not None:
            raise ValueError(f"bandwidth: the {name} kernel has no bandwidth; leave bandwidth at its default")
    g = 1.0 / d if gamma is None else as_real(gamma, "gamma")
    if name == "polynomial" and g <= 0:
        raise ValueError(f"gamma must be positive, got {g}")
    c0 = as_real(coef0, "coef0")
    deg = as_positive_int(degree, "degree")
    for s in bandwidths:  # the kernels multiply by 1 / (2 sigma^2): it must exist
        if s * s == 0.0 or not math.isfinite(1.0 / (2.0 * s * s)):
            raise ValueError(f"bandwidth {s:g} is too small: 1 / sigma^2 overflows float64; rescale the data "
                             "(a median bandwidth this small means the points are that close together)")
    return KernelSpec(name, bandwidths, g, c0, deg)


def _median_of(arrays: Sequence[np.ndarray], max_points: int, seed: Any) -> float:
    counts = [a.shape[0] for a in arrays]
    if sum(counts) < 2:  # no pair of distinct points: no positive distance
        return 1.0
    parts = [np.asarray(a[sel], dtype=np.float64)
             for a, sel in zip(arrays, subsample_rows(counts, max_points, seed)) if sel.size]
    z = np.concatenate(parts, axis=0)
    z = z - z.mean(axis=0)
    sq = np.einsum("ij,ij->i", z, z)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)
    k = z.shape[0]
    dist = np.sqrt(np.maximum(np.concatenate([d2[i, i + 1 :] for i in range(k - 1)]), 0.0))
    med = float(np.median(dist))
    if med > 0:
        return med
    positive = dist[dist > 0]
    return float(np.median(positive)) if positive.size else 1.0


def median_bandwidth(x: Any, y: Any = None, *, max_points: int = 2000, seed: Any = 0) -> float:
    """The median heuristic bandwidth: the median Euclidean distance between
    distinct points of the pooled set.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d), optional
        Pooled with ``x`` (rows of ``x`` then rows of ``y``).
    max_points : int, default 2000
        When the pooled set has more rows, a subsample of this many rows is
        drawn without replacement with ``numpy.random.default_rng(seed)``.
    seed : int, default 0
        Seed of the subsample.

    Returns
    -------
    float
        ``median{ ||z_i - z_j|| : i < j }`` over the (sub)sampled pooled rows,
        with NumPy's median convention (mean of the two middle values).  If the
        median is 0 (many duplicates), the median of the positive distances; if
        every point is identical (or there is a single point), 1.0.  This is the sigma used by
        ``bandwidth="median"`` (Gretton et al., 2012).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> x = np.random.default_rng(0).normal(size=(500, 8))
    >>> round(simgap.median_bandwidth(x), 1)
    3.8
    """
    max_points = as_positive_int(max_points, "max_points", minimum=2)
    check_seed(seed)
    if device_of(x=x, y=y) != "cpu":
        from ._ops import cuda as _cuda_ops

        xa, ya, same = _cuda_ops.cuda_pair(x, y)
        return _cuda_ops.median_bandwidth([xa] if same else [xa, ya], max_points, seed)
    xa = as_matrix(x, "x")
    arrays = [xa]
    if y is not None:
        ya = as_matrix(y, "y")
        check_same_features(xa, ya)
        arrays.append(ya)
    return _median_of(arrays, max_points, seed)


def _prepare_pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    xa = as_matrix(x, "x")
    if y is None:
        return xa, xa, True
    ya = as_matrix(y, "y")
    check_same_features(xa, ya)
    dtype = common_dtype(xa, ya)
    same = same_memory(xa, ya)
    xa, ya = cast(xa, dtype), cast(ya, dtype)
    return xa, (xa if same else ya), same


def kernel_matrix(
    x: Any,
    y: Any = None,
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    precision: str = "highest",
) -> np.ndarray:
    """The explicit kernel matrix K[i, j] = k(x_i, y_j), for small problems.

    The other functions never build this matrix; use it to inspect kernels or
    to feed code that needs it.  Memory is n * m * itemsize.

    Parameters
    ----------
    x : array_like, shape (n, d)
        NumPy array or CPU torch tensor, float32 or float64 (integers become float64).
    y : array_like, shape (m, d), optional
        Defaults to ``x`` (then the diagonal is exactly k(0)).
    kernel : {"gaussian", "laplacian", "imq", "polynomial", "linear", "energy"}
        See :mod:`simgap.kernels` for the definitions.
    bandwidth : "median", float or list of float, default "median"
        sigma; "median" uses :func:`median_bandwidth` of x and y pooled.  A list
        (gaussian only) sums the kernels over the bandwidths.
    gamma, coef0, degree : polynomial kernel parameters (gamma defaults to 1/d).
    precision : {"highest", "tf32", "bf16"}, default "highest"
        Precision of the inner products: see :func:`kernel_contract`.

    Returns
    -------
    ndarray, shape (n, m)
        float32 if both inputs are float32 (and within float32's range, see
        the module docstring), else float64 (a CUDA tensor for
        CUDA tensor inputs).

    Examples
    --------
    >>> import numpy as np, simgap
    >>> x = np.array([[0.0], [1.0]])
    >>> simgap.kernel_matrix(x, kernel="gaussian", bandwidth=1.0).round(4)
    array([[1.    , 0.6065],
           [0.6065, 1.    ]])
    """
    precision = check_precision(precision, device_of(x=x, y=y))
    if device_of(x=x, y=y) != "cpu":
        from ._ops import cuda as _cuda_ops

        xa, ya, same = _cuda_ops.cuda_pair(x, y)
        spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa] if same else [xa, ya],
                              median_fn=_cuda_ops.median_bandwidth)
        xa, ya = fit_kernel_values(spec, [xa, ya])
        return _cuda_ops.kernel_matrix(xa, ya, spec, same, precision)
    xa, ya, same = _prepare_pair(x, y)
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa] if same else [xa, ya])
    xa, ya = fit_kernel_values(spec, [xa, ya])
    center = pooled_mean([xa] if same else [xa, ya]) if spec.uses_distance else None
    out = np.empty((xa.shape[0], ya.shape[0]), dtype=xa.dtype)
    _C.kernel_matrix(xa, ya, out, *spec.args(), center, same)
    return out


def kernel_contract(
    x: Any,
    y: Any,
    weights: Any,
    *,
    kernel: str = "gaussian",
    bandwidth: Any = "median",
    gamma: float | None = None,
    coef0: float = 1.0,
    degree: int = 3,
    precision: str = "highest",
) -> np.ndarray:
    """Fused kernel contraction ``K(x, y) @ weights`` without forming K.

    out[i, c] = sum_j k(x_i, y_j) * weights[j, c].  The computation is tiled:
    each thread holds one tile of the kernel matrix at a time, so memory is
    O((n + m) * (d + q)) whatever n and m.  MMD sums, weighted MMD, batched and
    permutation statistics and the witness function are all of this form.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
        ``None`` means ``y = x``.
    weights : array_like, shape (m,) or (m, q)
        Any finite real values.
    kernel, bandwidth, gamma, coef0, degree
        As in :func:`kernel_matrix`.
    precision : {"highest", "tf32", "bf16"}, default "highest"
        How the inner products x_i . y_j are multiplied.  "highest": in the
        input precision (IEEE float32 -- never tf32 -- or float64), on every
        device.  CUDA tensors only: "tf32" / "bf16" round the centred inputs
        once to tf32 (10-bit mantissa, relative rounding 2^-11) or bf16 (7-bit,
        2^-8), take the squared norms of the rounded rows in float64, and
        multiply on tensor cores with float32 accumulation.  The squared
        distances are then those of the rounded points, so the error is the
        inputs' rounding: about 1e-4 (tf32) or 1e-3 (bf16) relative on the
        kernel values for unit-scale data; the result is compared with the
        float64 reference at 1e-3 (tf32) in the GPU tests.

    Returns
    -------
    ndarray of float64, shape (n,) or (n, q)
        Accumulated in float64 (products of float32 inputs are summed over
        tiles in float64).  CUDA tensor inputs (all on one device) give a CUDA
        tensor, computed on the caller's current stream: few features (d < 128)
        by one fused kernel whose kernel tile stays in registers, more features
        or tensor-core precisions by cuBLAS Gram tiles (4096 x 4096, a bounded
        workspace) followed by one fused kernel-and-contraction kernel.

    Examples
    --------
    >>> import numpy as np, simgap
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(100, 5)), rng.normal(size=(80, 5))
    >>> w = np.full(80, 1 / 80)
    >>> witness = simgap.kernel_contract(x, y, w, bandwidth=2.0)  # mean embedding of y at x
    >>> witness.shape
    (100,)
    """
    device = device_of(x=x, y=y, weights=weights)
    precision = check_precision(precision, device)
    if device != "cpu":
        return _kernel_contract_cuda(x, y, weights, kernel, bandwidth, gamma, coef0, degree, precision)
    xa, ya, same = _prepare_pair(x, y)
    w = weights.detach().cpu().numpy() if hasattr(weights, "detach") else weights
    try:
        w = np.asarray(w)
    except Exception:
        raise TypeError("weights must be a real array of shape (m,) or (m, q)") from None
    if w.dtype.kind not in "biuf":
        raise TypeError(f"weights must be real numbers, got dtype {w.dtype}")
    if w.ndim not in (1, 2):
        raise ValueError(f"weights must have shape (m,) or (m, q); got {w.ndim}-D")
    if w.shape[0] != ya.shape[0]:
        raise ValueError(f"weights has {w.shape[0]} rows but y has {ya.shape[0]}; they must match")
    if not np.isfinite(w).all():
        raise ValueError("weights contains NaN or Inf")
    squeeze = w.ndim == 1
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa] if same else [xa, ya])
    xa, ya = fit_kernel_values(spec, [xa, ya])
    w2 = np.ascontiguousarray(w.reshape(w.shape[0], -1), dtype=xa.dtype)
    center = pooled_mean([xa] if same else [xa, ya]) if spec.uses_distance else None
    out = np.zeros((xa.shape[0], w2.shape[1]), dtype=np.float64)
    _C.kernel_contract(xa, ya, w2, out, *spec.args(), center, same)
    return out[:, 0] if squeeze else out


def _kernel_contract_cuda(x, y, weights, kernel, bandwidth, gamma, coef0, degree, precision):
    from ._ops import cuda as _cuda_ops

    xa, ya, same = _cuda_ops.cuda_pair(x, y)
    w = weights.detach()
    if w.is_complex() or not (w.dtype.is_floating_point or w.dtype in _int_dtypes()):
        raise TypeError(f"weights must be real numbers, got dtype {w.dtype}")
    if w.dim() not in (1, 2):
        raise ValueError(f"weights must have shape (m,) or (m, q); got {w.dim()}-D")
    if w.shape[0] != ya.shape[0]:
        raise ValueError(f"weights has {w.shape[0]} rows but y has {ya.shape[0]}; they must match")
    import torch

    if not bool(torch.isfinite(w.double()).all()):
        raise ValueError("weights contains NaN or Inf")
    squeeze = w.dim() == 1
    spec = resolve_kernel(kernel, bandwidth, gamma, coef0, degree, [xa] if same else [xa, ya],
                          median_fn=_cuda_ops.median_bandwidth)
    xa, ya = fit_kernel_values(spec, [xa, ya])
    out = _cuda_ops.kernel_contract(xa, ya, w.reshape(w.shape[0], -1), spec, same, precision)
    return out[:, 0] if squeeze else out


def _int_dtypes():
    import torch

    return (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
