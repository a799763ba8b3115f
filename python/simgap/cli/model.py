"""The inputs of ``simgap embed``: the model of ``--model PKG.MODULE:FACTORY`` (which runs
Python code from that module) and a folder of images as a torch Dataset."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import InputError, first_line

__all__ = ["IMAGE_SUFFIXES", "CurrentFolderLast", "import_factory", "image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class CurrentFolderLast:
    """The current folder last on ``sys.path`` (added if missing), for a while.

    ``--model`` finds modules next to the user's data, but a local file named like an
    installed package (``torchvision.py``) must not replace it, also not for the imports
    of the model's module.  ``python -m simgap`` put the current folder first: moved too.
    """

    def __enter__(self) -> None:
        self.saved = list(sys.path)
        cwd = os.getcwd()
        here = {"", ".", cwd}
        sys.path[:] = [p for p in sys.path if p not in here and os.path.abspath(p) != cwd] + [cwd]

    def __exit__(self, *exc: Any) -> None:
        sys.path[:] = self.saved


def import_factory(spec: str):
    """The model of ``--model PKG.MODULE:FACTORY``: this imports PKG.MODULE, which runs its code.

    FACTORY must be a class or a function (called with no arguments; it must return a
    callable model) or a ``torch.nn.Module`` instance (used as it is); anything else is
    an InputError ("not a model").
    """
    if ":" not in spec:
        raise InputError(f"--model {spec!r}: expected PKG.MODULE:FACTORY, e.g. torchvision.models:resnet18")
    mod_name, attr = spec.split(":", 1)
    if not mod_name or not attr:
        raise InputError(f"--model {spec!r}: expected PKG.MODULE:FACTORY (both parts), "
                         "e.g. torchvision.models:resnet18")
    import torch

    with CurrentFolderLast():  # also while the factory runs: it may import more
        try:
            obj = importlib.import_module(mod_name)
        except ImportError as exc:
            raise InputError(f"--model: cannot import {mod_name!r} ({first_line(exc)})") from exc
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise InputError(f"--model: {mod_name!r} has no attribute {attr!r}")
            obj = getattr(obj, part)
        if isinstance(obj, torch.nn.Module):
            return obj
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            raise InputError(f"--model: {spec} is a {type(obj).__name__}, not a model (expected a class, "
                             "a function or a torch.nn.Module)")
        model = obj()
    if not callable(model):
        raise InputError(f"--model: {spec} returned a {type(model).__name__}, not a model")
    return model


def _image_dataset(files: list[Path], size: tuple[int, int] | None, mode: str):
    """A map-style torch Dataset of image files, each as float32 (C, H, W) in [0, 1]."""
    import torch
    from PIL import Image

    class ImageFiles(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int):
            with Image.open(files[i]) as im:
                im = im.convert(mode)
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
            arr = arr[None] if arr.ndim == 2 else np.transpose(arr, (2, 0, 1))
            return torch.from_numpy(np.ascontiguousarray(arr))

    return ImageFiles()


def image_folder(path: Path, resize: int | None, mode: str):
    from PIL import Image

    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"--data: {path}: no {', '.join(IMAGE_SUFFIXES)} files in the folder")
    sizes = {}
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.setdefault(im.size, f)
        except Exception as exc:
            raise InputError(f"--data: {f}: not a readable image ({first_line(exc)})") from exc
    size = (resize, resize) if resize else None
    if size is None and len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise InputError(f"--data: {path}: images differ in size ({f1.name} is {s1[0]}x{s1[1]}, "
                         f"{f2.name} is {s2[0]}x{s2[1]}); pass --resize N")
    return _image_dataset(files, size, mode), [f.name for f in files]
