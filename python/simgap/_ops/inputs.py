"""Validation at the public boundary, and the device of a call.

Every public function checks its inputs here, once, and names the offending
argument; the compiled kernels trust what they get.  One checker serves NumPy
arrays, CPU torch tensors (both checked on the host and returned as NumPy
arrays), CUDA tensors (checked on their device with torch operations and kept
there) and shards of :mod:`simgap.distributed` (``allow_empty``).
:func:`device_of` is where the device of a call is decided; the checked arrays
then say it by their type (NumPy: the CPU, a tensor: CUDA), which is what
:mod:`simgap._ops.dispatch` reads.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from .._util.arrays import is_tensor, like
from ..store import EmbeddingStore, as_embeddings
from . import backend

__all__ = ["FLOAT32_MAGNITUDE", "float32_in_range", "tensor_device", "device_of", "as_matrix", "as_pair",
           "as_matrices", "as_weights", "as_columns", "as_projections", "check_finite", "check_same_features", "same_memory", "same_values",
           "common_dtype", "cast", "is_float64", "to_float64", "max_sq_norm", "memory_limit", "check_memory"]

# Rows checked for NaN/Inf per step, so the check never allocates more than a
# few MB whatever the input size.
_FINITE_CHUNK_ELEMENTS = 1 << 22

# float32 inputs whose largest magnitude lies outside this range are computed
# in float64 (an exact conversion): above it, squared norms and Gram products
# (sums of d products) approach float32's overflow at 3.4e38; below it,
# products fall towards its subnormal range (1.2e-38) and lose digits.  All
# zeros stay float32 (exact).
FLOAT32_MAGNITUDE = (1e-15, 1e15)


def float32_in_range(magnitude: float) -> bool:
    """Whether float32 arithmetic holds for data whose largest |value| is ``magnitude``."""
    lo, hi = FLOAT32_MAGNITUDE
    return magnitude == 0.0 or lo <= magnitude <= hi


# The most memory one call may ask for, when the machine's physical memory
# cannot be read (``os.sysconf`` is POSIX only).
FALLBACK_MEMORY_LIMIT = 1 << 40


def memory_limit() -> int:
    """The most memory, in bytes, that one call may need: the machine's
    physical memory (``SC_PHYS_PAGES * SC_PAGE_SIZE``), or 1 TiB where it
    cannot be read."""
    try:
        total = int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY_LIMIT
    return total if total > 0 else FALLBACK_MEMORY_LIMIT


def check_memory(nbytes: float, name: str, value: Any, what: str) -> None:
    """ValueError naming the argument ``name`` (given ``value``) when the call
    would need ``nbytes`` bytes (for ``what``) beyond :func:`memory_limit`:
    refused up front rather than ending in a MemoryError part-way."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{name}={value} needs about {nbytes / 2**30:,.1f} GiB of memory ({what}), more than this "
                         f"machine's {limit / 2**30:,.1f} GiB; lower {name}")


def _torch():
    import torch

    return torch


# ---- the device of a call --------------------------------------------------------------------

def tensor_device(t: Any) -> str:
    """The device of one torch tensor as simgap names it: ``"cpu"`` or ``"cuda:N"``.

    The one reading of a tensor's device (the CPU stand-in tests of the CUDA
    path replace this function to send CPU tensors down the CUDA path)."""
    dev = t.device
    if dev.type == "cpu":
        return "cpu"
    return f"{dev.type}:{dev.index if dev.index is not None else 0}"


def device_of(**arrays: Any) -> str:
    """The device all the given inputs live on: ``"cpu"`` or ``"cuda:N"``.

    NumPy arrays and anything that is not a torch tensor count as CPU; None is
    skipped.  Inputs on different devices raise ValueError naming them; a
    CUDA tensor with a build that has no CUDA module raises RuntimeError
    saying how to rebuild (never a silent fallback to the CPU).
    """
    devices: dict[str, str] = {}
    for name, obj in arrays.items():
        if obj is None:
            continue
        if is_tensor(obj):
            if obj.device.type not in ("cpu", "cuda"):
                raise ValueError(f"{name} is on device {obj.device}; simgap supports CPU and CUDA tensors")
            devices[name] = tensor_device(obj)
        else:
            devices[name] = "cpu"
    found = sorted(set(devices.values()))
    if len(found) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"inputs are on different devices ({where}); move them to one device")
    device = found[0] if found else "cpu"
    if device != "cpu" and backend.CUDA is None:
        first = next(k for k, v in devices.items() if v != "cpu")
        raise RuntimeError(f"{first} is a CUDA tensor but {backend.REBUILD}")
    return device


# ---- matrices ----------------------------------------------------------------------------------

def _check_shape(shape: tuple, name: str, allow_empty: bool) -> None:
    if len(shape) != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {len(shape)}-D "
            f"with shape {shape}"
        )
    if shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} has 0 rows; at least one sample is needed")
    if shape[1] == 0:
        raise ValueError(f"{name} has 0 columns; at least one feature is needed")


def as_matrix(x: Any, name: str, *, device: str | None = None, allow_empty: bool = False) -> Any:
    """``x`` as a checked 2-D float32/float64 matrix, on its device (copied only when needed).

    ``x`` may be an array, a torch tensor, an :class:`~simgap.EmbeddingStore`
    or the path of one (its rows are memory-mapped, not read into memory).
    ``device`` is the call's device (:func:`device_of`; None: that of ``x``):
    ``"cpu"`` gives a NumPy array (a CUDA tensor then raises), a CUDA device
    a contiguous CUDA tensor.  ``allow_empty``: 0 rows are accepted (a shard
    of :mod:`simgap.distributed`).

    Integer and boolean inputs become float64, float16 (and bfloat16) become
    float32; float32 inputs whose largest magnitude is outside
    ``FLOAT32_MAGNITUDE`` (1e-15 .. 1e15), where float32 products would
    overflow or underflow, become float64.  Complex, object and string dtypes
    raise TypeError; non-2-D, empty or non-finite inputs raise ValueError.
    """
    if x is None:
        raise TypeError(f"{name} must be an array of shape (n_samples, n_features), got None")
    if device is None:
        device = device_of(**{name: x})
    if device != "cpu":
        return _device_matrix(x, name, allow_empty)
    return _host_matrix(x, name, allow_empty)


def _host_matrix(x: Any, name: str, allow_empty: bool) -> np.ndarray:
    if isinstance(x, (str, os.PathLike, EmbeddingStore)):
        # An embedding store (or its folder): its rows, memory-mapped.
        x = as_embeddings(x, name=name)
    if is_tensor(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}; this function needs CPU data")
        if x.is_complex():
            raise TypeError(f"{name} has complex dtype {x.dtype}; expected real floating point")
        x = x.detach()
        if x.dtype in (_torch().float16, _torch().bfloat16):
            x = x.float()
        x = x.resolve_conj().resolve_neg().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; expected real floating point")
    if kind in "biu":
        arr = arr.astype(np.float64)
    elif kind == "f":
        if arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)
        elif arr.dtype.itemsize > 8:
            arr = arr.astype(np.float64)
    else:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; expected a real numeric dtype (float32 or float64)"
        )
    _check_shape(arr.shape, name, allow_empty)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if any(s % arr.itemsize for s in arr.strides):
        arr = np.ascontiguousarray(arr)
    magnitude = check_finite(arr, name)
    if arr.dtype == np.float32 and not float32_in_range(magnitude):
        arr = arr.astype(np.float64)
    return arr


def _device_matrix(t: Any, name: str, allow_empty: bool) -> Any:
    """The CUDA checks: the host's rules with torch operations on the device."""
    torch = _torch()
    if t.is_complex():
        raise TypeError(f"{name} has complex dtype {t.dtype}; expected real floating point")
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif t.dtype not in (torch.float32, torch.float64):  # integers, bool, other floats
        t = t.double()
    _check_shape(tuple(t.shape), name, allow_empty)
    if t.shape[0]:
        # One reduction, one host sync, no full-size temporary: NaN propagates, Inf shows.
        lo, hi = (float(v) for v in torch.stack(torch.aminmax(t)).double().cpu())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or Inf")
        if t.dtype == torch.float32 and not float32_in_range(max(-lo, hi)):
            t = t.double()  # float32 products would overflow or underflow (the host's rule)
    return t.contiguous()


def as_pair(x: Any, y: Any, xname: str = "x", yname: str = "y", *, device: str | None = None,
            allow_empty: bool = False) -> tuple[Any, Any]:
    """``x`` and ``y`` checked (:func:`as_matrix`), with the same number of
    features, in one dtype (float64 if either is).  ``y`` None, or the same
    memory as ``x``, gives ``(x, x)``: one object, which callers test with ``is``."""
    if device is None:
        device = device_of(**{xname: x, yname: y})
    xa = as_matrix(x, xname, device=device, allow_empty=allow_empty)
    if y is None:
        return xa, xa
    ya = as_matrix(y, yname, device=device, allow_empty=allow_empty)
    check_same_features(xa, ya, xname, yname)
    same = same_memory(xa, ya)
    if is_float64(xa) or is_float64(ya):
        xa, ya = to_float64(xa), to_float64(ya)
    return xa, (xa if same else ya)


def as_matrices(named: Sequence[tuple[str, Any]], *, device: str | None = None,
                allow_empty: bool = False) -> list:
    """Several ``(name, array)`` checked (:func:`as_matrix`), each with the
    features of the first, in one dtype (float64 if any is)."""
    if device is None:
        device = device_of(**dict(named))
    arrays: list = []
    for name, value in named:
        a = as_matrix(value, name, device=device, allow_empty=allow_empty)
        if arrays:
            check_same_features(arrays[0], a, named[0][0], name)
        arrays.append(a)
    if any(is_float64(a) for a in arrays):
        arrays = [to_float64(a) for a in arrays]
    return arrays


def check_finite(arr: np.ndarray, name: str) -> float:
    """Raise ValueError naming the first NaN or Inf; return the largest |value|
    (0 for no values).  One pass in chunks of rows, no full-size temporary."""
    rows = max(1, _FINITE_CHUNK_ELEMENTS // max(1, arr.shape[-1]))
    magnitude = 0.0
    for start in range(0, arr.shape[0], rows):
        block = arr[start : start + rows]
        if block.size == 0:
            continue
        lo, hi = float(block.min()), float(block.max())  # NaN propagates, Inf shows
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad = np.argwhere(~np.isfinite(block))[0]
            where = (start + int(bad[0]),) + tuple(int(b) for b in bad[1:])
            raise ValueError(f"{name} contains NaN or Inf (first at index {where})")
        magnitude = max(magnitude, -lo, hi)
    return magnitude


def check_same_features(x: Any, y: Any, xname: str = "x", yname: str = "y") -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{xname} has {x.shape[1]} columns but {yname} has {y.shape[1]}; "
            "both must have the same number of features"
        )


def same_memory(x: Any, y: Any) -> bool:
    """True when the checked matrices x and y are views of exactly the same elements."""
    if is_tensor(x) or is_tensor(y):
        return (is_tensor(x) and is_tensor(y) and x.data_ptr() == y.data_ptr() and x.shape == y.shape
                and x.dtype == y.dtype and x.stride() == y.stride())
    return (
        x.shape == y.shape
        and x.dtype == y.dtype
        and x.strides == y.strides
        and x.__array_interface__["data"][0] == y.__array_interface__["data"][0]
    )


def same_values(x: Any, y: Any) -> bool:
    """True when the checked matrices x and y hold the same points: the same
    memory, or equal shape, dtype and values (one pass, on their device)."""
    if x is y or same_memory(x, y):
        return True
    if is_tensor(x) != is_tensor(y) or x.shape != y.shape or x.dtype != y.dtype:
        return False
    return bool(_torch().equal(x, y)) if is_tensor(x) else bool(np.array_equal(x, y))


def is_float64(a: Any) -> bool:
    """Whether a checked matrix (NumPy or torch) is float64."""
    return str(a.dtype).endswith("float64")


def to_float64(a: Any) -> Any:
    """A checked matrix in float64 (itself when it is)."""
    if is_tensor(a):
        return a.double()
    return a if a.dtype == np.float64 else a.astype(np.float64)


def common_dtype(*arrays: np.ndarray) -> np.dtype:
    """float64 if any input is float64, else float32."""
    if any(a.dtype == np.float64 for a in arrays):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return arr if arr.dtype == dtype else arr.astype(dtype)


def max_sq_norm(a: Any) -> float:
    """The largest squared row norm of a NumPy array or a tensor, in float64, in
    chunks of rows (no full-size temporary)."""
    rows, d = a.shape[0], a.shape[1]
    if rows == 0:
        return 0.0
    step = max(1, (1 << 22) // max(1, d))
    if is_tensor(a):  # reduced on its device, one host sync
        torch = _torch()
        parts = [(c * c).sum(dim=1).max() for c in (a[s : s + step].double() for s in range(0, rows, step))]
        return float(torch.stack(parts).max())
    best = 0.0
    for s in range(0, rows, step):
        c = np.asarray(a[s : s + step], dtype=np.float64)
        best = max(best, float(np.einsum("ij,ij->i", c, c).max()))
    return best


# ---- weights -----------------------------------------------------------------------------------

def as_weights(w: Any, n: int, name: str, *, on: Any = None, normalise: bool = True) -> Any:
    """Sample weights: non-negative, finite, one per row, float64.

    Checked on the host (a tensor is copied there: n values).  ``normalise``:
    scaled to sum 1 (huge weights whose sum overflows are first scaled by a
    power of two, exactly); False keeps them as given (a shard of
    :mod:`simgap.distributed`, whose total is global; n may then be 0).  The
    result is a NumPy array, or a tensor on the device of ``on`` when ``on``
    (the checked matrix the weights belong to) is one.  None stays None.
    """
    if w is None:
        return None
    if is_tensor(w):
        w = w.detach().cpu()
        if w.is_floating_point() and w.element_size() < 4:  # half precision: NumPy has no bfloat16
            w = w.double()
        w = w.resolve_conj().resolve_neg().numpy()
    arr = np.asarray(w)
    if arr.dtype.kind == "c" or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of length {n}; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but the data has {n} rows")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    if (arr < 0).any():
        raise ValueError(f"{name} must be non-negative; found {arr.min()}")
    if normalise:
        with np.errstate(over="ignore"):
            overflows = not np.isfinite(arr.sum())
        if overflows:  # huge weights: their sum overflows; scaled by a power of two (exact)
            arr = np.ldexp(arr, -int(np.frexp(arr.max())[1]))
        total = arr.sum()
        if not total > 0:
            raise ValueError(f"{name} are all zero; at least one weight must be positive")
        arr = arr / total
    return like(np.ascontiguousarray(arr), on)


def as_columns(w: Any, m: int, name: str = "weights", *, device: str = "cpu") -> Any:
    """Contraction weights: real and finite, of shape (m,) or (m, q); a NumPy
    array on the host, the tensor itself on a device (no copy)."""
    if device != "cpu":
        torch = _torch()
        w = w.detach()
        ints = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
        real = not w.is_complex() and (w.dtype.is_floating_point or w.dtype in ints)
    else:
        if is_tensor(w):
            w = w.detach().cpu().numpy()
        try:
            w = np.asarray(w)
        except Exception:
            raise TypeError(f"{name} must be a real array of shape (m,) or (m, q)") from None
        real = w.dtype.kind in "biuf"
    if not real:
        raise TypeError(f"{name} must be real numbers, got dtype {w.dtype}")
    if w.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (m,) or (m, q); got {w.ndim}-D")
    if w.shape[0] != m:
        raise ValueError(f"{name} has {w.shape[0]} rows but y has {m}; they must match")
    finite = bool(_torch().isfinite(w.double()).all()) if device != "cpu" else bool(np.isfinite(w).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or Inf")
    return w


def as_projections(projections: Any, d: int) -> np.ndarray:
    """Directions given by the caller, one per column: real, finite, of shape
    (d, L >= 1), as float64 on the host (a tensor is copied there)."""
    if is_tensor(projections):
        projections = projections.detach().cpu().numpy()
    theta = np.asarray(projections)
    if theta.dtype.kind not in "biuf":
        raise TypeError(f"projections must be real numbers, got dtype {theta.dtype}")
    if theta.ndim != 2 or theta.shape[0] != d or theta.shape[1] == 0:
        raise ValueError(
            f"projections must have shape (d, L) = ({d}, L >= 1) to match x; got {theta.shape}"
        )
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    check_finite(theta, "projections")
    return theta
