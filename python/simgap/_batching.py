"""The data side of :class:`simgap.Embedder`: what a dataset's length is, how it
is cut into batches (and resumed after ``skip`` samples), which part of a batch
is the model input, and moving that input to the model's device.

torch is imported lazily (on first use), so ``import simgap`` stays fast.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._util.arrays import is_tensor
from .distributed import shard_range

__all__ = [
    "MASK_KEY",
    "batch_len",
    "check_progress",
    "data_length",
    "is_array",
    "is_text_list",
    "iter_batches",
    "mapping_length",
    "move_to",
    "progress_bar",
    "select_input",
    "shard_rows",
    "shuffles",
    "slice_rows",
]

# The key of a dict batch whose value, when present, masks padding tokens for
# "mean_tokens" pooling (the Hugging Face tokenizer convention).
MASK_KEY = "attention_mask"


def is_array(obj: Any) -> bool:
    """A NumPy array or a torch tensor."""
    return isinstance(obj, np.ndarray) or is_tensor(obj)


def is_text_list(obj: Any) -> bool:
    """A non-empty list or tuple of strings (the input of a text model)."""
    return isinstance(obj, (list, tuple)) and len(obj) > 0 and all(isinstance(s, str) for s in obj)


def slice_rows(obj: Any, start: int, stop: int, n: int) -> Any:
    """Rows [start:stop) of every part of a batch whose leading size is n."""
    if is_array(obj):
        return obj[start:stop] if obj.ndim and obj.shape[0] == n else obj
    if isinstance(obj, Mapping):
        return {k: slice_rows(v, start, stop, n) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if len(obj) == n and (not obj or not is_array(obj[0]) and not isinstance(obj[0], (Mapping, list, tuple))):
            return obj[start:stop]
        return type(obj)(slice_rows(v, start, stop, n) for v in obj)
    return obj


# ----------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------


def mapping_length(data: Mapping) -> int:
    """The common leading size of a dict of (N, ...) arrays."""
    lengths = {k: v.shape[0] for k, v in data.items() if is_array(v) and v.ndim}
    if not lengths:
        raise TypeError("data is a dict without arrays or tensors; expected a dict of (N, ...) arrays")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"data is a dict of arrays with different lengths: {lengths}")
    return next(iter(lengths.values()))


def data_length(data: Any) -> int | None:
    """The number of samples ``data`` will give, when it is known without iterating."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset

    if is_array(data):
        return int(data.shape[0]) if data.ndim else None
    if is_text_list(data):
        return len(data)
    if isinstance(data, Mapping):
        return mapping_length(data)
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset) or data.batch_size is None:
            return None
        try:
            n = len(data.sampler)
        except TypeError:
            return None
        return (n // data.batch_size) * data.batch_size if data.drop_last else n
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        try:
            return len(data)  # type: ignore[arg-type]
        except TypeError:
            return None
    return None


def iter_batches(data: Any, skip: int, batch_size: int, input_key: Any) -> Iterable[Any]:
    """The batches of ``data`` (arrays, text lists, dicts of arrays and datasets cut into
    ``batch_size`` rows; a DataLoader's or an iterable's own batches), with its first
    ``skip`` samples left out."""
    from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

    bs = batch_size
    if data is None:
        raise TypeError("data must be an array, a tensor, a Dataset, a DataLoader or an iterable of batches; got None")
    if isinstance(data, (str, bytes)):
        raise TypeError("data is a single string; pass a list of strings")
    if is_array(data):
        if data.ndim == 0:
            raise ValueError("data is a 0-d array; it needs a leading sample axis")
        if isinstance(data, np.ndarray) and data.dtype.kind not in "biufUS":
            raise TypeError(f"data has dtype {data.dtype}; expected numbers (or strings for text models)")
        n = data.shape[0]
        return (data[i : i + bs] for i in range(skip, n, bs))
    if is_text_list(data):
        return (list(data[i : i + bs]) for i in range(skip, len(data), bs))
    if isinstance(data, Mapping):
        n = mapping_length(data)
        return (slice_rows(data, i, i + bs, n) for i in range(skip, n, bs))
    if isinstance(data, DataLoader):
        return _skip(data, skip, input_key)
    if isinstance(data, IterableDataset):
        return _skip(DataLoader(data, batch_size=bs), skip, input_key)
    if isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError("data is a map-style Dataset without __len__; wrap it in a DataLoader") from None
        return DataLoader(Subset(data, range(skip, n)) if skip else data, batch_size=bs)
    if isinstance(data, (list, tuple)) and not data:
        return iter(())
    if isinstance(data, Iterable):
        return _skip(data, skip, input_key)
    raise TypeError(
        "data must be an array, a tensor, a Dataset, a DataLoader or an iterable of batches; "
        f"got {type(data).__name__}"
    )


def _skip(batches: Iterable[Any], skip: int, input_key: Any) -> Iterable[Any]:
    """The batches after the first ``skip`` samples (read, not run through the model)."""
    seen = 0
    for batch in batches:
        if seen >= skip:
            yield batch
            continue
        n = batch_len(batch, input_key)
        if seen + n > skip:
            batch = slice_rows(batch, skip - seen, n, n)
        seen += n
        if seen > skip:
            yield batch
    if seen < skip:
        raise ValueError(
            f"data has {seen} samples but the interrupted store already holds {skip} rows; resume needs "
            "the same data as the interrupted run (or pass overwrite=True to start again)"
        )


def shard_rows(data: Any, cols: Any, rank: int, world: int) -> tuple[int, int, int, Any, Any]:
    """(n, start, stop, shard, shard metadata): the contiguous block of rows of ``data``
    (and of its metadata columns ``cols``) that ``rank`` of ``world`` embeds."""
    from torch.utils.data import Dataset, IterableDataset, Subset

    if is_array(data):
        n = int(data.shape[0])
    elif isinstance(data, Mapping):
        n = mapping_length(data)
    elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        n = len(data)  # type: ignore[arg-type]
    else:
        raise ValueError(
            "data: distributed=True needs data with a length (an array, a tensor, a dict of "
            "arrays or a map-style Dataset)"
        )
    start, stop = shard_range(n, rank, world)
    if is_array(data):
        shard = data[start:stop]
    elif isinstance(data, Mapping):
        shard = {k: v[start:stop] for k, v in data.items()}
    else:
        shard = Subset(data, range(start, stop))
    part_meta = None if cols is None else {k: v[start:stop] for k, v in cols.items()}
    return n, start, stop, shard, part_meta


def shuffles(loader: Any) -> bool:
    """Whether a DataLoader's rows come in a random order: a random sampler
    (RandomSampler, SubsetRandomSampler, WeightedRandomSampler, a
    DistributedSampler with shuffle=True), also inside its batch sampler."""
    from torch.utils.data import RandomSampler, SubsetRandomSampler, WeightedRandomSampler
    from torch.utils.data.distributed import DistributedSampler

    samplers = [getattr(loader, "sampler", None)]
    batch_sampler = getattr(loader, "batch_sampler", None)
    samplers.append(getattr(batch_sampler, "sampler", batch_sampler))
    for s in samplers:
        if isinstance(s, (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)):
            return True
        if isinstance(s, DistributedSampler) and getattr(s, "shuffle", False):
            return True
    return False


# ----------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------


def select_input(batch: Any, input_key: Any) -> tuple[Any, bool, Any]:
    """(model input, call with **kwargs?, attention mask or None) of one batch."""
    key = input_key
    if isinstance(batch, Mapping):
        mask = batch.get(MASK_KEY)
        if key is None:
            return dict(batch), True, mask
        if key not in batch:
            raise ValueError(f"input_key {key!r} is not a key of the batch; its keys are {list(batch)}")
        return batch[key], False, mask
    if is_array(batch) or is_text_list(batch):
        if isinstance(key, str):
            raise ValueError(f"input_key {key!r} names a key of dict batches, but the batches are "
                             f"{type(batch).__name__}s; leave input_key=None")
        return batch, False, None
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise ValueError("a batch is an empty tuple; expected (x, ...) or a tensor")
        if isinstance(key, numbers.Integral):
            if not -len(batch) <= key < len(batch):
                raise ValueError(f"input_key {key} is out of range for a batch of {len(batch)} parts")
            first = batch[key]
        else:
            first = batch[0]
        if isinstance(first, Mapping):
            return select_input(first, input_key)
        if isinstance(key, str):
            raise ValueError(f"input_key {key!r} names a key of dict batches, but the batches are tuples "
                             f"whose first part is a {type(first).__name__}; leave input_key=None or give "
                             "the position of the model's input (an int)")
        return first, False, None
    raise TypeError(
        f"a batch of type {type(batch).__name__} is not supported; batches must be tensors, "
        "arrays, lists of strings, (x, y, ...) tuples or dicts"
    )


def batch_len(batch: Any, input_key: Any) -> int:
    """The number of samples in one batch (the leading size of its model input)."""
    x, kwargs, _ = select_input(batch, input_key)
    if kwargs:
        for v in x.values():
            if is_array(v) and v.ndim:
                return int(v.shape[0])
        raise ValueError(f"cannot tell the batch size of a dict batch with keys {list(x)}; pass input_key")
    if is_array(x):
        if x.ndim == 0:
            raise ValueError("a batch is a 0-d array; it needs a leading sample axis")
        return int(x.shape[0])
    if isinstance(x, (list, tuple)):
        return len(x)
    raise TypeError(f"cannot tell the batch size of a model input of type {type(x).__name__}")


def move_to(obj: Any, device: Any, float_dtype: Any) -> Any:
    """A model input on ``device`` (arrays as tensors, floating-point ones cast to
    ``float_dtype`` when given; string arrays as lists; dicts part by part)."""
    import torch

    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "USO":
            return obj.tolist()
        obj = torch.from_numpy(np.ascontiguousarray(obj))
    if is_tensor(obj):
        if float_dtype is not None and obj.is_floating_point() and obj.dtype != float_dtype:
            return obj.to(device=device, dtype=float_dtype, non_blocking=True)
        return obj.to(device=device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move_to(v, device, float_dtype) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------


def progress_bar(progress: Any, total: int | None, initial: int):
    """A tqdm bar in samples (see ``Embedder(progress=...)`` for the choices)."""
    from tqdm import tqdm

    if progress is None:
        stream = sys.stderr
        enabled = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    elif progress is True:
        stream, enabled = sys.stderr, sys.stderr is not None
    elif progress is False:
        stream, enabled = sys.stderr, False
    else:
        stream, enabled = progress, True
    return tqdm(
        total=total, initial=initial, unit="samples", file=stream,
        disable=not enabled, desc="embedding", dynamic_ncols=False, smoothing=0.1,
    )


def check_progress(progress: Any) -> None:
    """``progress`` is None, a bool or a file object with ``write()``."""
    if progress is None or isinstance(progress, bool):
        return
    if not callable(getattr(progress, "write", None)):
        raise TypeError(
            f"progress must be None (a bar on a terminal), True, False or a file object with "
            f"write(); got {type(progress).__name__}"
        )
