"""The inputs of :func:`simgap.compare`: embeddings (arrays, tensors or stores),
the per-sample side data (ids, class labels, simulation parameters), the
scalar options, and the seeds and seeded subsamples every later step draws."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .._ops.inputs import as_matrix, as_pair, cast, check_same_features, common_dtype, device_of
from .._util.arrays import is_tensor, to_host
from .._util.checks import as_positive_int, subsample_rows
from ..store import EmbeddingStore, as_embeddings

__all__ = [
    "Data",
    "load_arrays",
    "check_options",
    "store_parts",
    "metadata_params",
    "pair_arg",
    "label_pair",
    "params_frame",
    "missing_as_none",
    "seeds",
    "subsample",
]


@dataclass
class Data:
    """The checked data of one compare() call.

    ``xa``, ``ya`` are NumPy arrays (the host copies the scikit-learn steps use);
    ``xk``, ``yk`` are where the kernel sums, k-NN and distances run: the same
    arrays on the CPU, CUDA tensors on ``device`` otherwise.
    """

    xa: np.ndarray
    ya: np.ndarray
    xk: Any
    yk: Any
    device: str
    syn_meta: dict | None  # the synthetic store's metadata

    @property
    def n(self) -> int:
        return self.xa.shape[0]

    @property
    def m(self) -> int:
        return self.ya.shape[0]


# ----------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------


def store_parts(obj: Any) -> tuple[Any, dict | None]:
    """(embeddings, metadata or None) for a store (path or EmbeddingStore); (obj, None) otherwise."""
    if isinstance(obj, (str, os.PathLike)):
        obj = EmbeddingStore(obj)
    if isinstance(obj, EmbeddingStore):
        return obj.embeddings, obj.metadata
    return obj, None


def _embeddings(obj: Any, name: str) -> np.ndarray:
    """A checked 2-D NumPy array (a CUDA tensor is copied to the host)."""
    if is_tensor(obj) and obj.device.type != "cpu":
        obj = obj.detach().cpu()
    if not isinstance(obj, np.ndarray):
        obj = as_embeddings(obj, name=name)
    return as_matrix(obj, name)


def load_arrays(real: Any, synthetic: Any) -> Data:
    """The two sets of embeddings, checked, in one dtype, on their device."""
    real_src, _ = store_parts(real)
    syn_src, syn_meta = store_parts(synthetic)
    device = device_of(real=real_src, synthetic=syn_src)
    if device != "cpu":
        # Kernel sums, k-NN and distances on the GPU (xk, yk); scikit-learn's steps
        # (C2ST, k-means, forests, PCA, map) on one host copy (xa, ya).
        xk, yk = as_pair(real_src, syn_src, "real", "synthetic", device=device)
        xa, ya = to_host(xk), to_host(yk)
    else:
        xa = _embeddings(real_src, "real")
        ya = _embeddings(syn_src, "synthetic")
        check_same_features(xa, ya, "real", "synthetic")
        dtype = common_dtype(xa, ya)
        xa, ya = cast(xa, dtype), cast(ya, dtype)
        xk, yk = xa, ya
    return Data(xa=xa, ya=ya, xk=xk, yk=yk, device=device, syn_meta=syn_meta)


# ----------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------


def check_options(options: Mapping[str, Any], n: int, m: int) -> dict[str, Any]:
    """compare()'s options with the scalar ones checked (integers as ``int``);
    ``n`` and ``m`` are the numbers of real and synthetic rows."""
    opts = dict(options)
    k = opts["k"] = as_positive_int(opts["k"], "k")
    for rows, name in ((n, "real"), (m, "synthetic")):
        if rows <= k:
            raise ValueError(f"{name} has {rows} rows; compare() with k={k} needs more than k")
    opts["n_permutations"] = as_positive_int(opts["n_permutations"], "n_permutations")
    opts["n_bootstrap"] = as_positive_int(opts["n_bootstrap"], "n_bootstrap", minimum=2)
    opts["max_exact"] = as_positive_int(opts["max_exact"], "max_exact", minimum=2 * (k + 1))
    opts["c2st_max"] = as_positive_int(opts["c2st_max"], "c2st_max", minimum=2)
    opts["c2st_folds"] = as_positive_int(opts["c2st_folds"], "c2st_folds", minimum=2)
    opts["n_bins"] = as_positive_int(opts["n_bins"], "n_bins", minimum=2)
    opts["n_directions"] = as_positive_int(opts["n_directions"], "n_directions")
    opts["max_clusters"] = as_positive_int(opts["max_clusters"], "max_clusters", minimum=2)
    opts["map_points"] = as_positive_int(opts["map_points"], "map_points", minimum=2)
    ci_level, alpha, n_clusters = opts["ci_level"], opts["alpha"], opts["n_clusters"]
    if not (isinstance(ci_level, numbers.Real) and 0 < ci_level < 1):
        raise ValueError(f"ci_level must be in (0, 1), got {ci_level!r}")
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (n_clusters == "auto" or (isinstance(n_clusters, numbers.Integral) and not isinstance(n_clusters, bool)
                                     and n_clusters >= 1)):
        raise ValueError(f"n_clusters must be 'auto' or a positive integer, got {n_clusters!r}")
    if opts["map_method"] not in ("auto", "pca", "umap"):
        raise ValueError(f"map_method must be 'auto', 'pca' or 'umap', got {opts['map_method']!r}")
    return opts


# ----------------------------------------------------------------------------
# Side data: ids, labels, parameters
# ----------------------------------------------------------------------------


def metadata_params(params: Any, ids: Any, meta: dict | None) -> tuple[Any, Any]:
    """``(params, ids)`` with a synthetic store's metadata filled in: it becomes
    ``params`` when none are given, and its ``id`` column the synthetic ids when
    no ids are given."""
    if params is None and meta is not None:
        meta = dict(meta)
        if ids is None and "id" in meta:
            ids = {"synthetic": meta.pop("id")}
        else:
            meta.pop("id", None)
        params = meta or None
    return params, ids


def pair_arg(value: Any, n: int, m: int, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(real_values, synthetic_values)`` from a pair, a {"real", "synthetic"} mapping or None."""
    if value is None:
        return None, None
    if isinstance(value, Mapping):
        unknown = set(value) - {"real", "synthetic"}
        if unknown:
            raise ValueError(f"{name}: unknown keys {sorted(map(str, unknown))}; use 'real' and 'synthetic'")
        pair = (value.get("real"), value.get("synthetic"))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and not isinstance(value[0], (str, bytes, numbers.Number)):
        pair = (value[0], value[1])
    else:
        raise TypeError(
            f"{name} must be a pair (real_{name}, synthetic_{name}) or a dict with keys 'real' and "
            f"'synthetic'; got {type(value).__name__}"
        )
    out = []
    for part, rows, side in zip(pair, (n, m), ("real", "synthetic")):
        if part is None:
            out.append(None)
            continue
        if is_tensor(part):
            part = part.detach().cpu().numpy()
        arr = np.asarray(part)
        if arr.ndim != 1:
            raise ValueError(f"{name} for {side} must be 1-D; got shape {arr.shape}")
        if arr.shape[0] != rows:
            raise ValueError(f"{name} for {side} has {arr.shape[0]} entries but {side} has {rows} rows")
        out.append(arr)
    return out[0], out[1]


def missing_as_none(labels: np.ndarray | None) -> np.ndarray | None:
    """Class labels with every missing value (None, NaN, pd.NA, NaT) as None: one
    class of its own (NaN != NaN made one empty class per NaN, pd.NA raised)."""
    if labels is None:
        return None
    import pandas as pd

    missing = np.asarray(pd.isna(labels), dtype=bool)
    if not missing.any():
        return labels
    out = np.empty(labels.shape[0], dtype=object)
    out[:] = labels.tolist()
    out[missing] = None
    return out


def label_pair(labels: Any, n: int, m: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(real_labels, synthetic_labels)``, both or neither, missing values as None."""
    real_labels, syn_labels = (missing_as_none(v) for v in pair_arg(labels, n, m, "labels"))
    if (real_labels is None) != (syn_labels is None):
        raise ValueError("labels: give class labels for both real and synthetic")
    return real_labels, syn_labels


def params_frame(params: Any, m: int):
    """The simulation parameters as a DataFrame of ``m`` rows with string column names (or None)."""
    import pandas as pd

    if params is None:
        return None
    if isinstance(params, EmbeddingStore):
        params = params.metadata
        if params is None:
            raise ValueError("params: the embedding store has no metadata")
    if isinstance(params, pd.DataFrame):
        df = params.reset_index(drop=True).copy()
    elif isinstance(params, Mapping):
        cols = {}
        for key, values in params.items():
            arr = values.detach().cpu().numpy() if is_tensor(values) else np.asarray(values)
            if arr.ndim != 1:
                raise ValueError(f"params[{key!r}] must be 1-D (one value per synthetic sample); got shape {arr.shape}")
            cols[str(key)] = arr
        df = pd.DataFrame(cols)
    else:
        raise TypeError(
            f"params must be a pandas DataFrame, a dict of 1-D arrays or an embedding store; got {type(params).__name__}"
        )
    if df.shape[1] == 0:
        raise ValueError("params has no columns")
    if df.shape[0] != m:
        raise ValueError(f"params has {df.shape[0]} rows but synthetic has {m}; give one row per synthetic sample")
    df.columns = [str(c) for c in df.columns]
    if len(set(df.columns)) != df.shape[1]:
        raise ValueError("params has duplicate column names")
    return df


# ----------------------------------------------------------------------------
# Seeds and subsamples
# ----------------------------------------------------------------------------


def seeds(seed: Any, k: int) -> list[int]:
    """k independent integer seeds derived from ``seed`` (None: fresh entropy)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed}")
    ss = np.random.SeedSequence(seed)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in ss.spawn(k)]


def subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """The sorted rows of a seeded random subsample of ``limit`` of ``n`` rows
    (all rows when n <= limit): simgap's one seeded subsample, of one set."""
    return subsample_rows([n], limit, seed)[0]
