"""The compiled modules, held here and nowhere else: :data:`CPU` and :data:`CUDA`.

``simgap._C`` (CPU) is always built.  ``simgap._cuda`` exists only when the
package was built with a CUDA toolkit; a failed import leaves :data:`CUDA`
``None`` and :func:`backends` says so.  Everything that launches CUDA work
reads the module from :data:`CUDA` when it runs (the CPU stand-in tests of the
CUDA path replace it there).  The device of a call is decided by
:func:`simgap._ops.inputs.device_of`, which never falls back silently: a CUDA
tensor given to a build without CUDA is an error that says how to rebuild
(:data:`REBUILD`).
"""

from __future__ import annotations

from typing import Any

from .. import _C as CPU

try:  # the CUDA module is optional
    from .. import _cuda as CUDA  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    CUDA = None

__all__ = ["CPU", "CUDA", "REBUILD", "backends", "build_info"]

REBUILD = (
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
    if CUDA is not None:
        try:
            cuda = CUDA.device_count() > 0
        except Exception:  # pragma: no cover - driver trouble means no usable GPU
            cuda = False
    return {"cpu": True, "cuda": cuda}


def build_info() -> dict[str, Any]:
    """Details of this build: instruction set, threads, OpenMP, CUDA module."""
    info: dict[str, Any] = {
        "cpu_isa": CPU.isa(),
        "openmp": bool(CPU.openmp),
        "threads": int(CPU.max_threads()),
        "cuda_module": CUDA is not None,
    }
    if CUDA is not None:
        info["cuda_runtime_version"] = int(CUDA.runtime_version())
        info["cuda_driver_version"] = int(CUDA.driver_version())
        info["cuda_devices"] = int(CUDA.device_count())
    return info
