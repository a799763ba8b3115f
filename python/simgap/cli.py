"""The ``simgap`` command line: the analysis on the user's own files, and the demo.

Every command has ``--help``.  Errors are one line on stderr and a documented exit code
(:data:`EXIT_CODES`); ``--debug`` adds the traceback.  Output files are written atomically
(a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .report import published_mode

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_ERROR = 4
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141

#: Exit code -> meaning, as printed by ``simgap --help`` and in README.md.
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_USAGE: "usage error (unknown command or option, bad option value)",
    EXIT_INPUT: "bad input file (missing, unreadable, unsupported format, wrong shape, "
                "mismatched dimensions or row counts, NaN or Inf)",
    EXIT_ERROR: "any other error (a failure while computing or writing, a missing optional package)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_PIPE: "the reader of the output went away (e.g. `simgap info | head`); nothing is printed",
}

EMBEDDING_FORMATS = ".npy, .npz, .pt/.pth, .csv, .parquet (numeric columns) or an embedding store folder"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DISTANCE_METRICS = ("mmd", "swd", "fd", "prdc")


class InputError(Exception):
    """A bad input file; main() turns it into exit code 3 and a one-line message."""


# --------------------------------------------------------------------------- reading inputs


def _check_exists(path: str, what: str) -> Path:
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
    suffix = Path(path).suffix.lower()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of simgap
        raise RuntimeError(f"reading {suffix} files needs pandas: pip install pandas") from None
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
        raise InputError(f"{what}: {path}: cannot read it as {suffix[1:]} ({_first_line(exc)})") from exc
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
    p = _check_exists(path, what)
    suffix = p.suffix.lower()
    if p.is_dir():
        from .store import StoreError, load_embeddings

        try:
            arr, _ = load_embeddings(p)
        except (StoreError, FileNotFoundError, ValueError) as exc:
            raise InputError(f"{what}: {_first_line(exc)}") from exc
    elif suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{what}: {path}: not a readable .npy file ({_first_line(exc)})") from exc
    elif suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arr = _pick_array({k: z[k] for k in z.files}, path, what)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{what}: {path}: not a readable .npz file ({_first_line(exc)})") from exc
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
        raise InputError(f"{what}: {path}: not a readable torch file ({_first_line(exc)})") from exc
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


def _load_pair(real_path: str, syn_path: str) -> tuple[np.ndarray, np.ndarray]:
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

    p = _check_exists(path, what)
    suffix = p.suffix.lower()
    try:
        if p.is_dir():
            from .store import EmbeddingStore, StoreError

            try:
                meta = EmbeddingStore(p).metadata
            except (StoreError, FileNotFoundError, ValueError) as exc:
                raise InputError(f"{what}: {_first_line(exc)}") from exc
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
        raise InputError(f"{what}: {path}: cannot read it ({_first_line(exc)})") from exc
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
    p = _check_exists(path, "--labels")
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
        raise InputError(f"--labels: {path}: cannot read it ({_first_line(exc)})") from exc
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


# --------------------------------------------------------------------------- writing outputs


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(tmp)`` on a temporary path in the target's folder, then ``os.replace`` it.

    The temporary name keeps the target's suffix, for writers that look at it.
    """
    path = os.path.abspath(os.fspath(path))
    _check_output(path)
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".simgap-", suffix=Path(path).suffix, dir=folder)
    os.close(fd)
    try:
        write(tmp)
        published_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _check_output(path: str) -> None:
    """Fail early (before any long computation) when an output file cannot be written there."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")


def _write_text(path: str, text: str) -> str:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, write)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# --------------------------------------------------------------------------- commands


def _cmd_info(args: argparse.Namespace) -> int:
    import simgap
    from ._ops.backend import build_info

    info = {"version": simgap.__version__, "backends": simgap.backends(), **build_info()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    print(json.dumps(info, indent=2))
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    for out in (args.json, args.html):
        if out:
            _check_output(out)
    real, syn = _load_pair(args.real, args.synthetic)
    params = load_params(args.params, syn.shape[0]) if args.params else None
    labels = load_labels(args.labels, real.shape[0], syn.shape[0]) if args.labels else None
    group, rank = None, 0
    if getattr(args, "distributed", False):
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise InputError("--distributed: RANK and WORLD_SIZE are not set (launch with torchrun)")
        import torch.distributed as dist

        from .distributed import shard_range

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        r0, r1 = shard_range(real.shape[0], rank, world)
        s0, s1 = shard_range(syn.shape[0], rank, world)
        real, syn = real[r0:r1], syn[s0:s1]
        if params is not None:
            params = params.iloc[s0:s1].reset_index(drop=True)
        if labels is not None:
            labels = (labels[0][r0:r1], labels[1][s0:s1])
        group = "auto"
    report = compare(real, syn, params=params, labels=labels, n_permutations=args.permutations,
                     seed=args.seed, group=group)
    if rank != 0:  # every rank has the same report; rank 0 prints and writes it
        return EXIT_OK
    # The files first: a failure while printing must not lose the computation.
    written = []
    if args.json:
        atomic_write(args.json, lambda tmp: report.to_json(tmp))
        written.append(args.json)
    if args.html:
        atomic_write(args.html, lambda tmp: report.to_html(tmp))
        written.append(args.html)
    report.summary()
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_recommend(args: argparse.Namespace) -> int:
    from .recommend import recommend

    if args.out:
        _check_output(args.out)
    real, syn = _load_pair(args.real, args.synthetic)
    params = load_params(args.params, syn.shape[0])
    rec = recommend(real, syn, params, seed=args.seed)
    configs = rec.sample(args.n, seed=args.seed)
    print(rec.summary())
    if args.out:
        _write_text(args.out, configs.to_csv(index=False))
        print(f"wrote {args.n} configurations to {args.out}")
    else:
        print()
        print(configs.to_csv(index=False), end="")
    return EXIT_OK


def _cmd_distance(args: argparse.Namespace) -> int:
    import simgap

    real, syn = _load_pair(args.real, args.synthetic)
    if args.metric == "mmd":
        value = simgap.mmd2(real, syn, kernel=args.kernel)
    elif args.metric == "swd":
        value = simgap.sliced_wasserstein(real, syn, n_projections=args.projections, seed=args.seed)
    elif args.metric == "fd":
        value = simgap.frechet_distance(real, syn)
    else:
        scores = simgap.prdc(real, syn, k=args.k)
        if args.stat is None:
            print(" ".join(f"{key}={float(scores[key]):.10g}"
                           for key in ("precision", "recall", "density", "coverage")))
            return EXIT_OK
        value = scores[args.stat]
    print(f"{float(value):.10g}")
    return EXIT_OK


def _import_factory(spec: str):
    if ":" not in spec:
        raise InputError(f"--model {spec!r}: expected PKG.MODULE:FACTORY, e.g. torchvision.models:resnet18")
    mod_name, attr = spec.split(":", 1)
    if not mod_name or not attr:
        raise InputError(f"--model {spec!r}: expected PKG.MODULE:FACTORY (both parts), "
                         "e.g. torchvision.models:resnet18")
    sys.path.insert(0, os.getcwd())  # modules next to the user's data, like `python -m`
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"--model: cannot import {mod_name!r} ({_first_line(exc)})") from exc
    finally:
        sys.path.pop(0)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"--model: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    import torch

    model = obj if isinstance(obj, torch.nn.Module) else obj()
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


def _image_folder(path: Path, resize: int | None, mode: str):
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeError("reading images needs Pillow: pip install Pillow") from None
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"--data: {path}: no {', '.join(IMAGE_SUFFIXES)} files in the folder")
    sizes = {}
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.setdefault(im.size, f)
        except Exception as exc:
            raise InputError(f"--data: {f}: not a readable image ({_first_line(exc)})") from exc
    size = (resize, resize) if resize else None
    if size is None and len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise InputError(f"--data: {path}: images differ in size ({f1.name} is {s1[0]}x{s1[1]}, "
                         f"{f2.name} is {s2[0]}x{s2[1]}); pass --resize N")
    return _image_dataset(files, size, mode), [f.name for f in files]


def _cmd_embed(args: argparse.Namespace) -> int:
    from .embedding import Embedder

    p = _check_exists(args.data, "--data")
    metadata = None
    if p.is_dir():
        data, names = _image_folder(p, args.resize, "L" if args.grayscale else "RGB")
        metadata = {"file": names}
    elif p.suffix.lower() == ".npy":
        try:
            data = np.load(p, mmap_mode="c", allow_pickle=False)  # copy-on-write: writable, file untouched
        except Exception as exc:
            raise InputError(f"--data: {p}: not a readable .npy file ({_first_line(exc)})") from exc
        if data.ndim < 2 or data.shape[0] == 0 or data.dtype.kind not in "biuf":
            raise InputError(f"--data: {p}: expected a non-empty numeric array (N, ...); "
                             f"got shape {data.shape}, dtype {data.dtype}")
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            raise InputError(f"--data: {p}: NaN or Inf in the inputs")
    else:
        raise InputError(f"--data: {p}: expected a folder of {'/'.join(IMAGE_SUFFIXES)} images or a .npy file")
    model = _import_factory(args.model)
    if hasattr(model, "eval"):
        model.eval()
    embedder = Embedder(model, layer=args.layer, pool=args.pool, batch_size=args.batch_size,
                        device=args.device)
    store = embedder.to_store(data, args.out, metadata=metadata, overwrite=args.overwrite,
                              resume=args.resume)
    print(f"wrote {store.count} embeddings of dimension {store.dim} to {store.path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(seed=args.seed, out=args.out, quick=args.quick, threads=args.threads)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= minimum."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_seed = _int_at_least(0, "non-negative")


def _epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items()]
    lines += ["", "Errors are one line on stderr; add --debug for the traceback.",
              "Run 'simgap COMMAND --help' for the options of a command."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = argparse.ArgumentParser(
        prog="simgap",
        description="Measure and close the gap between synthetic and real data, in the latent "
                    "space of your own model.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str, description: str):
        return sub.add_parser(name, help=help, description=description, parents=[common],
                              epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)

    pair_help = f"embeddings: {EMBEDDING_FORMATS}"

    p = add("demo", "run the whole loop on a built-in example (about a minute, nothing to download)",
            "Render synthetic digits from a poor default configuration, train a small CNN, measure "
            "the gap to scikit-learn's real handwritten digits in the CNN's latent space, recommend "
            "and refine a new configuration, render again, retrain and re-measure.  Writes "
            "report.html, report.json and summary.json to --out.")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="simgap-demo", help="output folder (default simgap-demo)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (used by the tests)")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch threads for the small CNN (default 1, the fastest for it)")
    p.set_defaults(func=_cmd_demo)

    p = add("compare", "how far SYNTHETIC is from REAL, where, and which parameters matter",
            "Compare two sets of embeddings: MMD² with a permutation test and bootstrap interval, "
            "sliced Wasserstein, Fréchet distance, precision/recall/density/coverage, a classifier "
            "two-sample test, clusters, and (with --params) which simulation parameters drive the gap.")
    p.add_argument("real", metavar="REAL", help=pair_help)
    p.add_argument("synthetic", metavar="SYNTHETIC", help=pair_help)
    p.add_argument("--params", metavar="FILE",
                   help="simulation parameters, one row per synthetic sample (.csv, .parquet, .npz, store)")
    p.add_argument("--labels", metavar="FILE",
                   help="class labels: a .csv with columns set (real/synthetic) and label, or "
                        "REAL's then SYNTHETIC's labels in order (.csv, .npy, .npz with arrays real, synthetic)")
    p.add_argument("--html", metavar="OUT", help="write the self-contained HTML report here")
    p.add_argument("--json", metavar="OUT", help="write the JSON report here")
    p.add_argument("--permutations", type=_positive_int, default=1000,
                   help="permutations of the MMD test (default 1000)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun (RANK, WORLD_SIZE set): each rank takes its share of the rows, "
                        "MMD², p-value and sliced Wasserstein are exact over all rows through a gloo group, "
                        "the rest runs on a subsample; rank 0 prints and writes the report")
    p.set_defaults(func=_cmd_compare)

    p = add("recommend", "simulator configurations that close the gap, from samples already rendered",
            "Weight the synthetic samples to match the real ones in latent space (kernel mean "
            "matching), turn the weights into a distribution over the simulation parameters, and "
            "sample N configurations for the next round.")
    p.add_argument("real", metavar="REAL", help=pair_help)
    p.add_argument("synthetic", metavar="SYNTHETIC", help=pair_help)
    p.add_argument("--params", metavar="FILE", required=True,
                   help="the parameters of each synthetic sample (.csv, .parquet, .npz, store)")
    p.add_argument("--n", type=_positive_int, default=100, help="configurations to sample (default 100)")
    p.add_argument("--out", metavar="FILE", help="write them as CSV here (default: print them)")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_recommend)

    p = add("distance", "one number for scripts: mmd, swd, fd or prdc",
            "Print one distance between two sets of embeddings on one line: mmd (unbiased MMD², "
            "median-heuristic bandwidth), swd (sliced Wasserstein-2), fd (Fréchet distance) or "
            "prdc (precision recall density coverage as key=value, or one of them with --stat).")
    p.add_argument("real", metavar="REAL", help=pair_help)
    p.add_argument("synthetic", metavar="SYNTHETIC", help=pair_help)
    p.add_argument("--metric", choices=DISTANCE_METRICS, required=True)
    p.add_argument("--kernel", default="gaussian", help="mmd: the kernel (default gaussian)")
    p.add_argument("--projections", type=_positive_int, default=256, help="swd: directions (default 256)")
    p.add_argument("--k", type=_positive_int, default=5, help="prdc: neighbours (default 5)")
    p.add_argument("--stat", choices=("precision", "recall", "density", "coverage"),
                   help="prdc: print only this one")
    p.add_argument("--seed", type=_seed, default=0, help="swd: random seed (default 0)")
    p.set_defaults(func=_cmd_distance)

    p = add("embed", "embed images or arrays with a layer of your own PyTorch model",
            "Run a PyTorch model over a folder of PNG/JPEG images (float32 in [0, 1], channels "
            "first) or a .npy array of inputs, and write the pooled output of --layer to an "
            "embedding store (a folder: embeddings.npy, manifest.json, metadata).")
    p.add_argument("--model", required=True, metavar="PKG.MODULE:FACTORY",
                   help="a function returning the torch.nn.Module (or the module object itself)")
    p.add_argument("--layer", metavar="NAME", help="dotted module name (default: the model's output)")
    p.add_argument("--data", required=True, metavar="FOLDER_OR_NPY")
    p.add_argument("--out", required=True, metavar="STORE", help="the store folder to write")
    p.add_argument("--pool", default="auto", choices=("auto", "avg", "max", "flatten", "cls", "mean_tokens"),
                   help="how the layer's output becomes one vector per sample (default auto)")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="default 256")
    p.add_argument("--device", default=None, help="default: where the model's parameters are")
    p.add_argument("--resize", type=_positive_int, default=None, metavar="N",
                   help="images: resize to N×N (needed when their sizes differ)")
    p.add_argument("--grayscale", action="store_true", help="images: one channel instead of RGB")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--resume", action="store_true", help="continue an interrupted store")
    p.set_defaults(func=_cmd_embed)

    p = add("info", "version, backends (CPU threads, CUDA devices) and build options as JSON",
            "Print the version, the compute backends and the build options as JSON.")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see :data:`EXIT_CODES`)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    if args.version:
        import simgap

        print(simgap.__version__)
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("simgap: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Python's advice: point stdout at devnull so that the flush at exit does not fail again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor
            pass
        return EXIT_PIPE
    except InputError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"simgap {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"simgap {args.command}: error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
