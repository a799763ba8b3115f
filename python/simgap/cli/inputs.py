"""Reading the command line's input files: embeddings (any supported format, checked:
2-D, enough rows, finite), per-sample parameter tables and class labels.  A bad file is
an :class:`InputError` (exit code 3, one line naming the file and what is wrong)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..store import EmbeddingStore, StoreError, load_embeddings

__all__ = ["InputError", "EMBEDDING_FORMATS", "check_exists", "first_line", "load_matrix", "load_pair",
           "load_params", "load_labels"]

EMBEDDING_FORMATS = ".npy, .npz, .pt/.pth, .csv, .parquet (numeric columns) or an embedding store folder"


class InputError(Exception):
    """A bad input file; main() turns it into exit code 3 and a one-line message."""



def check_exists(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: {path}: no such file or folder")
    return p


def _pick_array(arrays: dict, path: str, what: str, keys: Sequence[str] = ("embeddings", "x", "arr_0")):
    """The one array of an .npz / .pt dict, or the one under a conventional key."""
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    for key in keys:
        if key in arrays:
            return arrays[key]
    raise InputError(f"{what}: {path} holds several arrays ({', '.join(map(str, arrays))}); "
                     f"name one of them {' or '.join(repr(k) for k in keys[:2])}")


def _numeric_table(path: str, what: str) -> tuple[list[str], np.ndarray]:
    """Column names and an (n, k) float array of the numeric columns of a .csv or .parquet file."""
    import pandas as pd

    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".parquet":
            try:
                df = pd.read_parquet(path)
            except ImportError:
                raise RuntimeError("reading .parquet files needs pyarrow: pip install pyarrow") from None
        else:
            df = pd.read_csv(path)
            if _all_numbers(df.columns):  # no header row: the first row is data
                df = pd.read_csv(path, header=None)
    except RuntimeError:
        raise
    except Exception as exc:
        raise InputError(f"{what}: {path}: cannot read it as {suffix[1:]} ({first_line(exc)})") from exc
    numeric = [c for c in df.columns
               if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    if not numeric:
        raise InputError(f"{what}: {path} has no numeric columns")
    return [str(c) for c in numeric], df[numeric].to_numpy(dtype=np.float64)


def _all_numbers(names) -> bool:
    try:
        [float(str(n)) for n in names]
    except ValueError:
        return False
    return True


def load_matrix(path: str, what: str) -> np.ndarray:
    """An (n, d) array of embeddings from any supported file, checked: 2-D, non-empty, finite."""
    p = check_exists(path, what)
    suffix = p.suffix.lower()
    if p.is_dir():
        try:
            arr, _ = load_embeddings(p)
        except (StoreError, FileNotFoundError, ValueError) as exc:
            raise InputError(f"{what}: {first_line(exc)}") from exc
    elif suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{what}: {path}: not a readable .npy file ({first_line(exc)})") from exc
    elif suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arr = _pick_array({k: z[k] for k in z.files}, path, what)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{what}: {path}: not a readable .npz file ({first_line(exc)})") from exc
    elif suffix in (".pt", ".pth"):
        arr = _load_torch(path, what)
    elif suffix in (".csv", ".parquet"):
        _, arr = _numeric_table(path, what)
    else:
        raise InputError(f"{what}: {path}: unsupported format {suffix or '(no suffix)'}; "
                         f"use {EMBEDDING_FORMATS}")
    return _checked(arr, path, what)


def _load_torch(path: str, what: str) -> np.ndarray:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{what}: {path}: not a readable torch file ({first_line(exc)})") from exc
    if isinstance(obj, dict):
        obj = _pick_array({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)} or obj, path, what)
    if isinstance(obj, torch.Tensor):
        if obj.is_complex():
            raise InputError(f"{what}: {path}: complex values; expected real numbers")
        return obj.detach().to(torch.float64 if obj.dtype == torch.float64 else torch.float32).numpy()
    raise InputError(f"{what}: {path} holds a {type(obj).__name__}, not a tensor")


def _checked(arr: Any, path: str, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what}: {path}: dtype {arr.dtype}; expected real numbers")
    if arr.ndim != 2:
        raise InputError(f"{what}: {path}: expected a 2-D array (samples × features); got shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise InputError(f"{what}: {path}: shape {arr.shape}; at least 2 rows and 1 column are needed")
    if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
        arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        kind = "NaN" if np.isnan(arr).any() else "Inf"
        raise InputError(f"{what}: {path}: {kind} in {rows.size} row(s) (first: row {rows[0]})")
    return arr


def load_pair(real_path: str, syn_path: str) -> tuple[np.ndarray, np.ndarray]:
    real = load_matrix(real_path, "REAL")
    syn = load_matrix(syn_path, "SYNTHETIC")
    if real.shape[1] != syn.shape[1]:
        raise InputError(f"REAL has {real.shape[1]} columns but SYNTHETIC has {syn.shape[1]}: "
                         "embeddings must come from the same layer")
    return real, syn


def load_params(path: str, rows: int, what: str = "--params") -> Any:
    """A per-sample parameter table (pandas DataFrame) with one row per synthetic sample.

    .csv and .parquet keep every column (numeric and categorical); .npz uses its arrays as columns;
    an embedding store folder uses its metadata.
    """
    import pandas as pd

    p = check_exists(path, what)
    suffix = p.suffix.lower()
    try:
        if p.is_dir():
            try:
                meta = EmbeddingStore(p).metadata
            except (StoreError, FileNotFoundError, ValueError) as exc:
                raise InputError(f"{what}: {first_line(exc)}") from exc
            if meta is None:
                raise InputError(f"{what}: {path}: the store has no metadata columns")
            df = pd.DataFrame({k: v for k, v in meta.items() if k != "id"})
        elif suffix == ".csv":
            df = pd.read_csv(p)
        elif suffix == ".parquet":
            try:
                df = pd.read_parquet(p)
            except ImportError:
                raise RuntimeError("reading .parquet files needs pyarrow: pip install pyarrow") from None
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                df = pd.DataFrame({k: z[k] for k in z.files})
        else:
            raise InputError(f"{what}: {path}: unsupported format {suffix or '(no suffix)'}; "
                             "use .csv, .parquet, .npz or an embedding store folder")
    except (InputError, RuntimeError):
        raise
    except Exception as exc:
        raise InputError(f"{what}: {path}: cannot read it ({first_line(exc)})") from exc
    if df.shape[1] == 0:
        raise InputError(f"{what}: {path} has no columns")
    if df.shape[0] != rows:
        raise InputError(f"{what}: {path} has {df.shape[0]} rows but SYNTHETIC has {rows}; "
                         "give one row per synthetic sample")
    numeric = df.select_dtypes(include="number")
    if numeric.shape[1] and not np.isfinite(numeric.to_numpy(dtype=np.float64)).all():
        raise InputError(f"{what}: {path}: NaN or Inf in a numeric column")
    return df


def load_labels(path: str, n_real: int, n_syn: int) -> tuple[np.ndarray, np.ndarray]:
    """Class labels for both sets from one file: columns ``set`` (real/synthetic) and ``label``,
    or ``n_real + n_syn`` labels in order (real first); .csv, .npy or .npz (arrays ``real``,
    ``synthetic``)."""
    p = check_exists(path, "--labels")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if {"real", "synthetic"} <= set(z.files):
                    pair = np.asarray(z["real"]), np.asarray(z["synthetic"])
                else:
                    pair = None
                    flat = np.asarray(_pick_array({k: z[k] for k in z.files}, path, "--labels",
                                                  keys=("labels", "label")))
        elif suffix == ".npy":
            pair, flat = None, np.load(p, allow_pickle=False)
        elif suffix == ".csv":
            import pandas as pd

            df = pd.read_csv(p)
            if {"set", "label"} <= set(df.columns):
                sets = df["set"].astype(str).str.lower()
                pair = df["label"][sets == "real"].to_numpy(), df["label"][sets == "synthetic"].to_numpy()
            else:
                pair, flat = None, df.iloc[:, -1].to_numpy()
        else:
            raise InputError(f"--labels: {path}: unsupported format {suffix or '(no suffix)'}; "
                             "use .csv, .npy or .npz")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"--labels: {path}: cannot read it ({first_line(exc)})") from exc
    if pair is None:
        flat = np.asarray(flat)
        if flat.ndim != 1 or flat.shape[0] != n_real + n_syn:
            raise InputError(f"--labels: {path}: expected {n_real + n_syn} labels (REAL's {n_real} rows "
                             f"then SYNTHETIC's {n_syn}); got shape {flat.shape}")
        pair = flat[:n_real], flat[n_real:]
    for arr, rows, side in ((pair[0], n_real, "REAL"), (pair[1], n_syn, "SYNTHETIC")):
        if arr.shape[0] != rows:
            raise InputError(f"--labels: {path} has {arr.shape[0]} labels for {side}, which has {rows} rows")
    return pair


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
