"""The kernel specification: which kernels exist, their options, and the
:class:`KernelSpec` the compiled code receives.

The list of kernels is the compiled core's (``CPU.kernel_types``: name -> code,
in the order of the C++ table ``SIMGAP_KERNELS``, code = position, with the
kernels' properties beside it); nothing here keeps a copy of it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .._util.checks import as_positive_int, as_real
from .backend import CPU
from .inputs import max_sq_norm, to_float64

__all__ = ["KERNELS", "BANDWIDTH_KERNELS", "DISTANCE_KERNELS", "MAX_BANDWIDTHS", "KernelSpec", "check_kernel",
           "bandwidth_values", "NEGLIGIBLE_EXPONENT", "check_large_bandwidth", "resolve_kernel", "single_scale", "values_log10_bound", "check_values_bound",
           "needs_float64_values", "fit_kernel_values"]

# The kernels in the order of their codes (the C++ table's order).
KERNELS: tuple[str, ...] = tuple(sorted(CPU.kernel_types, key=CPU.kernel_types.__getitem__))
assert [int(CPU.kernel_types[k]) for k in KERNELS] == list(range(len(KERNELS))), "kernel codes are positions"
# The table's properties, exported by the compiled module beside kernel_types
# (SIMGAP_KERNELS in cpp/include/simgap/common.h).
DISTANCE_KERNELS: tuple[str, ...] = tuple(CPU.distance_kernels)
BANDWIDTH_KERNELS: tuple[str, ...] = tuple(CPU.bandwidth_kernels)
MAX_BANDWIDTHS: int = int(CPU.max_bandwidths)


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
        return int(CPU.kernel_types[self.name])

    @property
    def uses_distance(self) -> bool:
        return self.name in DISTANCE_KERNELS

    @property
    def scales(self) -> list[float]:
        """Per-bandwidth scale factors the kernel math multiplies by."""
        if self.name == "gaussian":
            return [1.0 / (2.0 * s * s) for s in self.bandwidths]
        if self.name == "laplacian":
            return [1.0 / self.bandwidths[0]]
        if self.name == "imq":
            return [1.0 / _square(self.bandwidths[0])]
        return [1.0]

    def args(self) -> tuple:
        return (self.code, self.scales, self.gamma, self.coef0, self.degree)


def _square(s: float) -> float:
    """s ** 2, inf where it overflows (``**`` raises OverflowError there)."""
    try:
        return s**2
    except OverflowError:
        return math.inf


# A kernel whose exponent t (d^2 / (2 sigma^2), d / sigma or d^2 / sigma^2) is
# below this for every pair has the value 1 exactly in float64: exp(-t) and
# (1 + t)^(-1/2) round to 1.  A bandwidth so large that the kernel's scale
# factor underflows float64 is accepted only when this holds for the data.
NEGLIGIBLE_EXPONENT = 2.0**-54


def check_large_bandwidth(spec: KernelSpec, arrays: Sequence[Any]) -> None:
    """ValueError naming ``bandwidth`` when the kernel's scale factor (1 / (2
    sigma^2), 1 / sigma or 1 / sigma^2) underflows float64 (it is then 0 or
    subnormal) while the data's distances are not negligible against sigma:
    the kernel values would be wrong.  When they are negligible, every kernel
    value is 1 exactly, which the underflowed scale computes."""
    if not spec.bandwidths or min(spec.scales) >= np.finfo(np.float64).tiny:
        return
    radius = math.sqrt(max((max_sq_norm(a) for a in arrays), default=0.0))
    for s in spec.bandwidths:
        ratio = 2.0 * radius / s  # a bound on ||a - b|| / sigma over all pairs of rows
        t = ratio if spec.name == "laplacian" else ratio * ratio * (0.5 if spec.name == "gaussian" else 1.0)
        if not t <= NEGLIGIBLE_EXPONENT:
            raise ValueError(f"bandwidth {s:g} is too large for these data: the kernel's scale factor underflows "
                             "float64 while the distances between rows are not negligible against it; rescale the "
                             "data and the bandwidth together")


def single_scale(spec: KernelSpec, sigma: float) -> KernelSpec:
    """``spec`` with the one bandwidth ``sigma`` (a term of a multi-scale gaussian)."""
    return KernelSpec(spec.name, (sigma,), spec.gamma, spec.coef0, spec.degree)


# The polynomial kernel's values are unbounded.  Tiles hold float32 kernel
# values and float32 partial sums of a few hundred of them, so float32 inputs
# are computed in float64 once a bound on the values passes 1e35; past 1e300
# the values overflow float64 itself, which raises.
FLOAT32_VALUES_LOG10 = 35.0
FLOAT64_VALUES_LOG10 = 300.0


def values_log10_bound(spec: KernelSpec, arrays: Sequence[Any]) -> float:
    """log10 of a bound on |k(a, b)| over all pairs of rows of ``arrays``: for the
    polynomial kernel (gamma max ||a||^2 + |coef0|)^degree (Cauchy-Schwarz;
    reached on the diagonal), 0 for the others (|k| <= 1, or the distances and
    inner products that ``FLOAT32_MAGNITUDE`` keeps in range)."""
    if spec.name != "polynomial":
        return 0.0
    base = abs(spec.gamma) * max((max_sq_norm(a) for a in arrays), default=0.0) + abs(spec.coef0)
    return spec.degree * math.log10(base) if base > 0 else -math.inf


def check_values_bound(log10: float) -> None:
    if log10 > FLOAT64_VALUES_LOG10:
        raise ValueError(
            f"the polynomial kernel's values reach about 1e{log10:.0f} on these inputs "
            "((gamma * max ||x||^2 + |coef0|)^degree), beyond float64; scale the data, or lower gamma or degree"
        )


def needs_float64_values(log10: float) -> bool:
    """Whether kernel values bounded by 10**log10 overflow float32 tiles (raises
    beyond float64)."""
    check_values_bound(log10)
    return log10 > FLOAT32_VALUES_LOG10


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
            done[id(a)] = to_float64(a)
        out.append(done[id(a)])
    return out


def check_kernel(kernel: Any) -> str:
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a string, one of {KERNELS}; got {type(kernel).__name__}")
    name = kernel.lower()
    if name not in KERNELS:
        raise ValueError(f"kernel {kernel!r} is unknown; expected one of {', '.join(KERNELS)}")
    return name


def bandwidth_values(bandwidth: Any, kernel: str) -> tuple[float, ...] | None:
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
        if len(values) > MAX_BANDWIDTHS:
            raise ValueError(f"bandwidth: at most {MAX_BANDWIDTHS} bandwidths are supported, got {len(values)}")
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
    arrays: Sequence[Any],
    *,
    max_points: int = 2000,
    seed: Any = 0,
    median_fn: Callable[[Sequence[Any], int, Any], float] | None = None,
) -> KernelSpec:
    """Check the kernel options; ``bandwidth="median"`` takes
    ``median_fn(arrays, max_points, seed)`` (the median heuristic,
    :func:`simgap._estimators.median_heuristic`, which the statistics pass)."""
    name = check_kernel(kernel)
    d = arrays[0].shape[1]
    bandwidths: tuple[float, ...] = ()
    if name in BANDWIDTH_KERNELS:
        values = bandwidth_values(bandwidth, name)
        if values is None:
            if median_fn is None:
                raise TypeError("resolve_kernel: bandwidth='median' needs median_fn")
            values = (median_fn(arrays, max_points, seed),)
        bandwidths = values
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
    spec = KernelSpec(name, bandwidths, g, c0, deg)
    check_large_bandwidth(spec, arrays)
    return spec
