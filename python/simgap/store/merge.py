"""Joining stores: :func:`merge_stores` concatenates the stores written by
several ranks (or runs) into one, in order."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .format import MODEL_FIELDS
from .reader import EmbeddingStore
from .writer import save_embeddings

__all__ = ["merge_stores"]


def merge_stores(parts: Sequence[Any], out: Any, *, overwrite: bool = False, chunk_rows: int = 65536):
    """Join embedding stores written by several ranks into one store, in the given order.

    With the rows of a dataset split by :func:`simgap.distributed.shard_range`,
    each rank embeds its block into its own store; merging the stores in rank
    order gives the store of the whole dataset, rows in order.  Run it on one rank after a
    barrier.  Rows are copied ``chunk_rows`` at a time through a temporary
    file beside ``out`` (memory stays bounded; disk needs twice the result).

    Parameters
    ----------
    parts : sequence of str or os.PathLike
        The stores (folders) to join.  A rank with no rows writes no store:
        leave it out.
    out : str or os.PathLike
        The new store; it must not exist unless ``overwrite=True``.
    overwrite : bool, default False
    chunk_rows : int, default 65536

    Returns
    -------
    simgap.EmbeddingStore
        The merged store.  Its metadata columns are the parts' columns
        concatenated (every part must have the same columns, or none); the
        model fields of the manifest (model_class, layer, pooling) must agree.

    Examples
    --------
    >>> import numpy as np, os, tempfile, simgap
    >>> from simgap.distributed import merge_stores
    >>> root = tempfile.mkdtemp()
    >>> a = simgap.save_embeddings(os.path.join(root, "rank0"), np.zeros((2, 3)))
    >>> b = simgap.save_embeddings(os.path.join(root, "rank1"), np.ones((1, 3)))
    >>> merge_stores([a.path, b.path], os.path.join(root, "all")).shape
    (3, 3)
    """
    if isinstance(parts, (str, Path)) or len(parts) == 0:
        raise ValueError("parts must be a non-empty list of store folders")
    stores = [EmbeddingStore(p) for p in parts]
    dims = {st.dim for st in stores}
    if len(dims) > 1:
        raise ValueError("the stores have different dimensions: " + ", ".join(
            f"{st.path}: {st.dim}" for st in stores))
    info = {k: stores[0].manifest.get(k) for k in MODEL_FIELDS}
    for st in stores[1:]:
        other = {k: st.manifest.get(k) for k in MODEL_FIELDS}
        if other != info:
            raise ValueError(f"the stores come from different models: {stores[0].path}: {info}; {st.path}: {other}")
    metas = [st.metadata for st in stores]
    metadata = None
    if any(mt is not None for mt in metas):
        keys = [None if mt is None else sorted(mt) for mt in metas]
        if any(k != keys[0] for k in keys):
            raise ValueError("the stores have different metadata columns: " + ", ".join(
                f"{st.path}: {k}" for st, k in zip(stores, keys)))
        metadata = {k: np.concatenate([mt[k] for mt in metas]) for k in keys[0]}
    total, dim = sum(st.count for st in stores), dims.pop()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".merge-") as tmp:
        rows = np.lib.format.open_memmap(Path(tmp) / "rows.npy", mode="w+", dtype=np.float32, shape=(total, dim))
        pos = 0
        for st in stores:
            for start in range(0, st.count, chunk_rows):
                block = np.asarray(st.embeddings[start : start + chunk_rows])
                rows[pos : pos + block.shape[0]] = block
                pos += block.shape[0]
        rows.flush()
        merged = save_embeddings(out, rows, metadata=metadata, overwrite=overwrite, info=info,
                                 chunk_rows=chunk_rows)
        del rows
    return merged
