"""The compiled modules and device dispatch, in one place.

``simgap._C`` (CPU) is always built.  ``simgap._cuda`` exists only when the
package was built with a CUDA toolkit; a failed import leaves it ``None`` and
:func:`backends` says so.  Device dispatch never falls back silently: a CUDA
tensor given to a build without CUDA is an error that says how to rebuild.
"""

from __future__ import annotations

from typing import Any


from .. import _C
from .._util.arrays import common_device, is_tensor

try:  # the CUDA module is optional
    from .. import _cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _cuda = None

__all__ = ["backends", "build_info", "device_of", "check_precision", "PRECISIONS", "cuda_module"]

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


def device_of(**arrays: Any) -> str:
    """The device all the given inputs live on: ``"cpu"`` or ``"cuda:N"``.

    NumPy arrays and anything that is not a torch tensor count as CPU.  Inputs
    on different devices raise ValueError naming them; a CUDA tensor with a
    build that has no CUDA module raises RuntimeError saying how to rebuild.
    """
    for name, obj in arrays.items():
        if is_tensor(obj) and obj.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{name} is on device {obj.device}; simgap supports CPU and CUDA tensors")
    device = common_device(**arrays)
    if device.startswith("cuda") and _cuda is None:
        first = next(k for k, v in arrays.items() if is_tensor(v) and v.device.type == "cuda")
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
