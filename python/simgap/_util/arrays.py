"""Array helpers shared by every layer: NumPy arrays and torch tensors (CPU or
CUDA) alike.  Nothing here loads a compiled module."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["is_tensor", "common_device", "take_rows", "like", "to_host", "concat_rows"]


def is_tensor(obj: Any) -> bool:
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
        dev = obj.device if is_tensor(obj) else None
        devices[name] = "cpu" if dev is None or dev.type == "cpu" else \
            f"{dev.type}:{dev.index if dev.index is not None else 0}"
    found = sorted(set(devices.values()))
    if len(found) > 1:
        where = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"inputs are on different devices ({where}); move them to one device")
    return found[0] if found else "cpu"



def take_rows(a: Any, rows: Any) -> Any:
    """``a[rows]`` for a NumPy array or a torch tensor; the rows stay where ``a`` is."""
    if not is_tensor(a):
        return a[rows]
    import torch

    return a.index_select(0, torch.as_tensor(np.ascontiguousarray(rows, dtype=np.int64), device=a.device))


def like(w: Any, a: Any) -> Any:
    """The NumPy array ``w`` on the device of ``a`` (unchanged when ``a`` is not a tensor)."""
    if not is_tensor(a):
        return w
    import torch

    return torch.from_numpy(np.ascontiguousarray(w)).to(a.device)


def to_host(a: Any) -> np.ndarray:
    """A result as a NumPy array (tensors, CUDA ones included, are copied to the host)."""
    if is_tensor(a):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def concat_rows(a: Any, b: Any) -> Any:
    """``a`` and ``b`` stacked by rows, where they are."""
    if not is_tensor(a):
        return np.concatenate([a, b], axis=0)
    import torch

    return torch.cat([a, b], dim=0)
