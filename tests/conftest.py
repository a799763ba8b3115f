"""Shared test parametrisation: one device x dtype list, tolerances by dtype, input helpers.

Test modules import from here (``from conftest import DTYPES, DEVICES, ...``) and compare against the
float64 references in ``_reference.py``.
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np
import pytest

# Make ``_reference`` / ``conftest`` importable whatever pytest's --import-mode is.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import simgap  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - torch is a test dependency
    torch = None

DTYPES = [np.float32, np.float64]

# Issue 2's bound: relative error of 1e-4 in float32 and 1e-5 in float64 against the float64 reference.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-5}

HAS_CUDA = bool(
    torch is not None and torch.cuda.is_available() and simgap.backends().get("cuda", False)
)
DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.gpu)] if HAS_CUDA else [])


def rtol(dtype) -> float:
    """Relative tolerance for results computed from inputs of ``dtype`` (float32 for mixed)."""
    return RTOL[np.dtype(dtype)]


def kernel_tol(dtype, k_ref) -> dict:
    """assert_allclose keywords for kernel values: rtol by dtype plus an atol at the kernel's scale.

    The atol (rtol x max|K|) covers entries near zero (energy / linear / polynomial kernels, far-apart
    pairs) whose absolute error is set by the size of the other entries, not by their own.  It does
    not excuse digits lost at near-zero distances: sqrt kernels (laplacian, energy) must stay within
    the issue's bound there too.
    """
    r = rtol(dtype)
    scale = float(np.max(np.abs(k_ref))) if np.size(k_ref) else 0.0
    return dict(rtol=r, atol=r * scale)


@pytest.fixture
def rng(request):
    """numpy Generator seeded from the test's node id: fresh data per case, reproducible per case."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def to_device(a, device):
    """NumPy array -> the input the library gets on ``device`` (NumPy on CPU, torch tensor on CUDA)."""
    if device == "cpu":
        return a
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def from_device(a, device):
    """The library's array result for inputs on ``device``, as NumPy: on CUDA it must
    be a CUDA tensor (arrays come back where the inputs were)."""
    if device == "cpu":
        return a
    assert isinstance(a, torch.Tensor) and a.is_cuda, f"expected a CUDA tensor, got {type(a).__name__}"
    return a.detach().cpu().numpy()


def gap_pair(rng, n, m, d, dtype, shift=0.75, shifted_dims=None):
    """x ~ N(0, I), y ~ N(0, I) shifted by ``shift`` in the first dims: MMD^2 and SW are O(0.1-1)."""
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((m, d))
    k = shifted_dims if shifted_dims is not None else max(1, min(d, 4))
    y[:, :k] += shift
    return x.astype(dtype), y.astype(dtype)
