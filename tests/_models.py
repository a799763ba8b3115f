"""Small models and datasets for the embedding and store tests (CPU, deterministic, fast)."""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset


class TinyCNN(nn.Module):
    """backbone.{conv1,bn1,relu1,layer2.{0,1}} -> pool -> dropout -> head.

    BatchNorm and Dropout make train and eval mode give different outputs.
    """

    def __init__(self, in_ch: int = 3, width: int = 8, n_classes: int = 5) -> None:
        super().__init__()
        self.backbone = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_ch, width, 3, padding=1),
            bn1=nn.BatchNorm2d(width),
            relu1=nn.ReLU(),
            layer2=nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()),
        ))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        f = self.backbone(x)
        return self.head(self.dropout(self.pool(f).flatten(1)))


@dataclasses.dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor
    pooled: torch.Tensor


class TinyTransformer(nn.Module):
    """Token ids (N, T) -> embed -> encoder.layers.{0,1} -> EncoderOutput (a dataclass)."""

    def __init__(self, vocab: int = 50, d: int = 16, n_layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=32, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.proj = nn.Linear(d, 4)

    def forward(self, input_ids, attention_mask=None):
        pad = None if attention_mask is None else attention_mask == 0
        h = self.encoder(self.embed(input_ids), src_key_padding_mask=pad)
        return EncoderOutput(last_hidden_state=h, pooled=self.proj(h[:, 0]))


def cnn(seed: int = 0, **kw) -> TinyCNN:
    torch.manual_seed(seed)
    m = TinyCNN(**kw)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        m.backbone.bn1.running_mean.uniform_(-0.5, 0.5)
        m.backbone.bn1.running_var.uniform_(0.5, 2.0)
    return m


def transformer(seed: int = 0, **kw) -> TinyTransformer:
    torch.manual_seed(seed)
    return TinyTransformer(**kw)


def images(n: int, seed: int = 0, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


class ImageDataset(Dataset):
    """Map-style: (image, label) pairs from an array."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = torch.from_numpy(x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 3


class LazyImages(IterableDataset):
    """Generates n images of shape (3, size, size) on the fly, deterministically per index."""

    def __init__(self, n: int, size: int = 8, delay: float = 0.0) -> None:
        self.n, self.size, self.delay = n, size, delay

    def __iter__(self):
        g = torch.Generator()
        for i in range(self.n):
            g.manual_seed(i)
            if self.delay and i % 16 == 0:
                time.sleep(self.delay)
            yield torch.randn(3, self.size, self.size, generator=g)


class FailingBatches:
    """An iterable of batches that raises ``exc`` after ``fail_after`` batches (simulated interruption)."""

    def __init__(self, x: np.ndarray, batch_size: int, fail_after: int | None = None,
                 exc: type[BaseException] = RuntimeError) -> None:
        self.x, self.bs, self.fail_after, self.exc = x, batch_size, fail_after, exc
        self.yielded = 0

    def __iter__(self):
        for k, i in enumerate(range(0, len(self.x), self.bs)):
            if self.fail_after is not None and k == self.fail_after:
                raise self.exc("simulated interruption")
            self.yielded += 1
            yield torch.from_numpy(self.x[i : i + self.bs]), torch.arange(i, min(i + self.bs, len(self.x)))


class CountingModel(nn.Module):
    """Wraps a model and counts forward calls and samples."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.samples = 0

    def forward(self, x):
        self.calls += 1
        self.samples += x.shape[0]
        return self.inner(x)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
