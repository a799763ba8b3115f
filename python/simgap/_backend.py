"""The compiled modules and device dispatch, in one place.

``simgap._C`` (CPU) is always built.  ``simgap._cuda`` exists only when the
package was built with a CUDA toolkit; a failed import leaves it ``None`` and
:func:`backends` says so.  Device dispatch never falls back silently: a CUDA
tensor given to a build without CUDA is an error that says how to rebuild.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _C

try:  # the CUDA module is optional
    from . import _cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

__all__ = ["backends", "device_of"]

_REBUILD = (
    "simgap was built without CUDA support. Rebuild it on a machine with the CUDA "
    "toolkit (nvcc on PATH): SIMGAP_CUDA=ON pip install --no-build-isolation --force-reinstall ."
)


def backends() -> dict[str, bool]:
    """Which compute backends this build of simgap has.

    Returns
    -------
    dict
        ``{"cpu": True, "cuda": bool}``. ``"cuda"`` is True when the CUDA module
        was built *and* the CUDA runtime sees at least one device.

    Examples
    --------
    >>> import simgap
    >>> simgap.backends()["cpu"]
    True
    """
    cuda = False
    if _cuda is not None:
        try:
            cuda = _cuda.device_count() > 0
        except Exception:  # pragma: no cover - driver trouble means no usable GPU
            cuda = False
    return {"cpu": True, "cuda": cuda}


def build_info() -> dict[str, Any]:
    """Details of this build: instruction set, threads, OpenMP, CUDA module."""
    info: dict[str, Any] = {
        "cpu_isa": _C.isa(),
        "openmp": bool(_C.openmp),
        "threads": int(_C.max_threads()),
        "cuda_module": _cuda is not None,
    }
    if _cuda is not None:
        info["cuda_runtime_version"] = int(_cuda.runtime_version())
        info["cuda_driver_version"] = int(_cuda.driver_version())
        info["cuda_devices"] = int(_cuda.device_count())
    return info


def _is_torch_tensor(obj: Any) -> bool:
    mod = type(obj).__module__
    if not (mod.startswith("torch") or mod == "torch"):
        return False
    import torch

    return isinstance(obj, torch.Tensor)


def common_device(**arrays: Any) -> str:
    """The one device of the given inputs (``"cpu"`` or ``"type:index"``), any
    device type and whatever this build holds; inputs on different devices
    raise ValueError naming them.  NumPy arrays and non-tensors count as CPU."""
    devices: dict[str, str] = {}
    for name, obj in arrays.items():
        if obj is None:
            continue
        dev = obj.device if _is_torch_tensor(obj) else None
        devices[name] = "cpu" if dev is None or dev.type == "cpu" else \
            f"{dev.type}:{dev.index if dev.index is not None else 0}"
    found = sorted(set(devices.values()))
    if len(found) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"inputs are on different devices ({where}); move them to one device")
    return found[0] if found else "cpu"


def device_of(**arrays: Any) -> str:
    """The device all the given inputs live on: ``"cpu"`` or ``"cuda:N"``.

    NumPy arrays and anything that is not a torch tensor count as CPU.  Inputs
    on different devices raise ValueError naming them; a CUDA tensor with a
    build that has no CUDA module raises RuntimeError saying how to rebuild.
    """
    for name, obj in arrays.items():
        if _is_torch_tensor(obj) and obj.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {obj.device}; simgap supports CPU and CUDA tensors")
    device = common_device(**arrays)
    if device.startswith("cuda") and _cuda is None:
        first = next(k for k, v in arrays.items() if _is_torch_tensor(v) and v.device.type == "cuda")
        raise RuntimeError(f"{first} is a CUDA tensor but {_REBUILD}")
    return device


PRECISIONS = ("highest", "tf32", "bf16")


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


# ---- the few array moves shared by the analysis layers (NumPy arrays or CUDA tensors) ----------

def take_rows(a: Any, rows: Any) -> Any:
    """``a[rows]`` for a NumPy array or a torch tensor; the rows stay where ``a`` is."""
    if not _is_torch_tensor(a):
        return a[rows]
    import torch

    return a.index_select(0, torch.as_tensor(np.ascontiguousarray(rows, dtype=np.int64), device=a.device))


def like(w: Any, a: Any) -> Any:
    """The NumPy array ``w`` on the device of ``a`` (unchanged when ``a`` is not a tensor)."""
    if not _is_torch_tensor(a):
        return w
    import torch

    return torch.from_numpy(np.ascontiguousarray(w)).to(a.device)


def to_host(a: Any) -> np.ndarray:
    """A result as a NumPy array (tensors, CUDA ones included, are copied to the host)."""
    if _is_torch_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def concat_rows(a: Any, b: Any) -> Any:
    """``a`` and ``b`` stacked by rows, where they are."""
    if not _is_torch_tensor(a):
        return np.concatenate([a, b], axis=0)
    import torch

    return torch.cat([a, b], dim=0)


def device_pair(x: Any, y: Any, xname: str, yname: str, allow_empty: bool = False):
    """Two CUDA tensors as checked matrices of one dtype (float32 with float64: float64)."""
    from . import _cuda_ops

    xd = _cuda_ops.as_cuda_matrix(x, xname, allow_empty=allow_empty)
    yd = _cuda_ops.as_cuda_matrix(y, yname, allow_empty=allow_empty)
    if xd.shape[1] != yd.shape[1]:
        raise ValueError(f"{xname} has {xd.shape[1]} columns but {yname} has {yd.shape[1]}; "
                         "both must have the same number of features")
    if xd.dtype != yd.dtype:
        xd, yd = xd.double(), yd.double()
    return xd, yd
