"""The ring of :mod:`simgap.distributed`: every unordered pair of shards visited once.

The shards of all ranks move around a ring of P ranks for floor(P / 2) steps
(:func:`ring`); a message is the shard's parts packed into one buffer, each
part starting on a float64 boundary.  :func:`ring_device` decides whether this
rank's shards, messages and kernels stay on its CUDA device (the
device-resident ring) or go through the host.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .._ops import backend
from .._util.arrays import is_tensor
from .comm import Comm

__all__ = ["np_dtype", "ring", "ring_device", "rows_half"]

_ALIGN = 8  # bytes: every part of a ring message starts on a float64 boundary


def ring_device(comm: Comm, device: str) -> Any:
    """The CUDA device on which this rank keeps its shards and runs its kernels
    (every function of :mod:`simgap.distributed`), or None for the host path.

    That is the shards' device when they are CUDA tensors, the group's backend
    is NCCL (the messages then go GPU to GPU) and its current device is that
    one, with a simgap build that has the CUDA module.  Otherwise CUDA shards
    are copied to the host once per call.  Each rank decides for itself: the
    messages are the same bytes either way."""
    if not device.startswith("cuda") or comm.device.type != "cuda" or backend.CUDA is None:
        return None
    return comm.device if str(comm.device) == device else None


def _layout(shapes: list[tuple[tuple[int, ...], np.dtype]]) -> tuple[list[int], int]:
    offsets, pos = [], 0
    for shape, dt in shapes:
        offsets.append(pos)
        pos += -(-int(np.prod(shape, dtype=np.int64)) * dt.itemsize // _ALIGN) * _ALIGN
    return offsets, max(pos, _ALIGN)


def np_dtype(dt: Any) -> np.dtype:
    """The NumPy dtype of a NumPy or torch dtype (the ring's layouts are in NumPy dtypes)."""
    return np.dtype(str(dt).replace("torch.", ""))


def _pack(parts: list[Any]) -> Any:
    offsets, size = _layout([(tuple(p.shape), np_dtype(p.dtype)) for p in parts])
    if parts and is_tensor(parts[0]):  # the device-resident ring: one buffer on the device
        import torch

        buf = torch.zeros(size, dtype=torch.uint8, device=parts[0].device)
        for off, p in zip(offsets, parts):
            nb = p.numel() * p.element_size()
            if nb:
                buf[off : off + nb] = p.contiguous().reshape(-1).view(torch.uint8)
        return buf
    buf = np.zeros(size, dtype=np.uint8)
    for off, p in zip(offsets, parts):
        buf[off : off + p.nbytes] = np.ascontiguousarray(p).reshape(-1).view(np.uint8)
    return buf


def _unpack(buf: Any, shapes: list[tuple[tuple[int, ...], np.dtype]]) -> list[Any]:
    offsets, _ = _layout(shapes)
    on_device = is_tensor(buf)
    if on_device:
        import torch
    out = []
    for off, (shape, dt) in zip(offsets, shapes):
        nb = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        part = buf[off : off + nb]  # every part starts 8-byte aligned: views of the buffer
        out.append((part.view(getattr(torch, dt.name)) if on_device else part.view(dt)).reshape(shape))
    return out


def ring(comm: Comm, parts: list[np.ndarray], shapes_of: Callable[[int], list], visit: Callable) -> None:
    """Visit every unordered pair of shards once (a half ring).

    ``visit(q, parts_q, half)`` is called on rank r with q = r (the diagonal, half
    None) and then with the shard of rank r - s for s = 1 .. floor(P / 2).  For
    even P, at s = P / 2 both ranks of a pair hold each other's shard and
    ``half`` is 0 on the lower rank and 1 on the upper one: each evaluates half
    of the rows of the lower rank's shard.  The next shard is in flight while
    a shard is being used.
    """
    P, r = comm.world, comm.rank
    steps = P // 2
    own = _pack(parts) if steps else None
    pending = comm.shift(own, _layout(shapes_of((r - 1) % P))[1]) if steps else None
    visit(r, parts, None)
    for s in range(1, steps + 1):
        buf = pending.wait()
        q = (r - s) % P
        if s < steps:
            pending = comm.shift(buf, _layout(shapes_of((r - s - 1) % P))[1])
        half = None if 2 * s != P else (0 if r < q else 1)
        visit(q, _unpack(buf, shapes_of(q)), half)


def rows_half(n: int, half: int | None) -> slice:
    """The rows of a shard of n rows that a visit of :func:`ring` evaluates (``half`` as there)."""
    if half is None:
        return slice(0, n)
    return slice(0, n // 2) if half == 0 else slice(n // 2, n)
