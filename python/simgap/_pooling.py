"""The output side of :class:`simgap.Embedder`: the tensor to embed from a model or
layer output (tensor, tuple, dict or dataclass), pooled to one vector per sample.

torch is imported lazily (on first use), so ``import simgap`` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._batching import MASK_KEY
from ._util.arrays import is_tensor

__all__ = ["POOLINGS", "extract_tensor", "first_tensor", "pool_output"]

#: The names accepted by ``Embedder(pool=...)`` (a callable is accepted too).
POOLINGS = ("auto", "avg", "max", "flatten", "cls", "mean_tokens")


def first_tensor(obj: Any, depth: int = 0) -> Any:
    """The first tensor in a (nested) tuple / list / dict / dataclass, or None."""
    if is_tensor(obj):
        return obj
    if depth > 4:
        return None
    if isinstance(obj, Mapping):
        values: Iterable[Any] = obj.values()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = (getattr(obj, f.name) for f in dataclasses.fields(obj))
    elif isinstance(obj, (tuple, list)):
        values = obj
    else:
        return None
    for v in values:
        t = first_tensor(v, depth + 1)
        if t is not None:
            return t
    return None


def extract_tensor(out: Any, output_key: Any) -> Any:
    """The tensor to pool from a model or layer output (tensor, tuple, dict or dataclass)."""
    if output_key is not None:
        try:
            if isinstance(output_key, str):
                if isinstance(out, Mapping):
                    picked = out[output_key]
                elif hasattr(out, output_key):
                    picked = getattr(out, output_key)
                else:
                    raise KeyError(output_key)
            else:
                picked = out[output_key]
        except (KeyError, IndexError, TypeError):
            if isinstance(out, Mapping):
                have = f"keys {list(out.keys())}"
            elif dataclasses.is_dataclass(out):
                have = f"fields {[f.name for f in dataclasses.fields(out)]}"
            elif isinstance(out, (tuple, list)):
                have = f"{len(out)} elements"
            else:
                have = f"type {type(out).__name__}"
            raise ValueError(f"output_key {output_key!r} is not in the model output ({have})") from None
        out = picked
    tensor = first_tensor(out)
    if tensor is None:
        raise TypeError(
            f"the captured output is a {type(out).__name__} holding no tensor; pass output_key= "
            "to pick the part to embed"
        )
    return tensor


def pool_output(out: Any, pool: Any, mask: Any) -> Any:
    """(N, ...) tensor -> (N, D) float32 tensor; see Embedder for the rules."""
    import torch

    if callable(pool):
        res = pool(out)
        if not is_tensor(res):
            res = torch.as_tensor(np.asarray(res))
        if res.dim() != 2:
            raise ValueError(f"pool returned shape {tuple(res.shape)}; a pooling callable must return (N, D)")
        return res.float()
    x = out.float()
    n = x.shape[0] if x.dim() else 0
    if x.dim() == 0:
        raise ValueError("the captured output is a scalar; it needs a batch axis to be embedded")
    if pool == "auto":
        pool = {1: "flatten", 2: "flatten", 3: "mean_tokens"}.get(x.dim(), "avg")
    if pool == "flatten":
        return x.reshape(n, -1)
    if pool in ("avg", "max"):
        if x.dim() <= 2:
            return x.reshape(n, -1)
        axes = tuple(range(2, x.dim()))
        return x.mean(dim=axes) if pool == "avg" else x.amax(dim=axes)
    # token poolings: (N, T, D)
    if x.dim() != 3:
        raise ValueError(
            f"pool={pool!r} needs a (N, T, D) token output but the captured output has shape "
            f"{tuple(x.shape)}; use 'avg', 'max' or 'flatten'"
        )
    if pool == "cls":
        return x[:, 0]
    if mask is None:
        return x.mean(dim=1)
    m = mask.to(device=x.device, dtype=x.dtype)
    if tuple(m.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"the {MASK_KEY} of the batch has shape {tuple(m.shape)} but the captured token "
            f"output has shape {tuple(x.shape)}; they must agree on (N, T)"
        )
    counts = m.sum(dim=1, keepdim=True).clamp_min(1.0)
    return (x * m.unsqueeze(-1)).sum(dim=1) / counts
