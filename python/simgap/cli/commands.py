"""The commands of ``simgap``, their parser, and :func:`main`.

Every command has ``--help``.  Errors are one line on stderr and a documented exit code
(:data:`EXIT_CODES`); ``--debug`` adds the traceback.  Output files are written atomically
(a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, Sequence

import numpy as np

import simgap

from .._ops.backend import backends, build_info
from ..compare import compare
from ..demo import run_demo
from ..distributed import shard_range
from ..embedding import Embedder
from ..metrics import frechet_distance, prdc
from ..mmd import mmd2
from ..recommend import recommend
from ..sliced import sliced_wasserstein
from .inputs import EMBEDDING_FORMATS, InputError, check_exists, first_line, load_labels, load_pair, load_params
from .interrupt import Abandoned, exit_now, run_interruptibly
from .model import IMAGE_SUFFIXES, image_folder, import_factory
from .outputs import atomic_write, check_output, print_summary, write_text

__all__ = ["EXIT_OK", "EXIT_USAGE", "EXIT_INPUT", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_PIPE", "EXIT_CODES",
           "build_parser", "main"]

# The commands' modules are imported here, not when a command runs: ``import simgap``
# loads all of them but the demo anyway (torch, pandas, optuna and the like stay lazy),
# so ``simgap --help`` is not measurably slower for it.

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
DISTANCE_METRICS = ("mmd", "swd", "fd", "prdc")


# --------------------------------------------------------------------------- commands


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    info = {"version": simgap.__version__, "backends": backends(), **build_info()}
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["torch_cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(json.dumps(info, indent=2))
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    for out in (args.json, args.html):
        if out:
            check_output(out)
    real, syn = load_pair(args.real, args.synthetic)
    params = load_params(args.params, syn.shape[0]) if args.params else None
    labels = load_labels(args.labels, real.shape[0], syn.shape[0]) if args.labels else None
    group, rank = None, 0
    if getattr(args, "distributed", False):
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise InputError("--distributed: RANK and WORLD_SIZE are not set (launch with torchrun)")
        import torch.distributed as dist

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
    report = run_interruptibly(compare, real, syn, params=params, labels=labels,
                               n_permutations=args.permutations, seed=args.seed, group=group)
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
    print_summary(report)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_recommend(args: argparse.Namespace) -> int:
    if args.out:
        check_output(args.out)
    real, syn = load_pair(args.real, args.synthetic)
    params = load_params(args.params, syn.shape[0])
    rec = run_interruptibly(recommend, real, syn, params, seed=args.seed)
    configs = rec.sample(args.n, seed=args.seed)
    print(rec.summary())
    if args.out:
        write_text(args.out, configs.to_csv(index=False))
        print(f"wrote {args.n} configurations to {args.out}")
    else:
        print()
        print(configs.to_csv(index=False), end="")
    return EXIT_OK


def _cmd_distance(args: argparse.Namespace) -> int:
    real, syn = load_pair(args.real, args.synthetic)
    value = run_interruptibly(_distance, args, real, syn)
    if args.metric == "prdc":
        if args.stat is None:
            print(" ".join(f"{key}={float(value[key]):.10g}"
                           for key in ("precision", "recall", "density", "coverage")))
            return EXIT_OK
        value = value[args.stat]
    print(f"{float(value):.10g}")
    return EXIT_OK


def _distance(args: argparse.Namespace, real: np.ndarray, syn: np.ndarray) -> Any:
    """The number of ``distance`` (prdc: its dict)."""
    if args.metric == "mmd":
        value = mmd2(real, syn, kernel=args.kernel)
    elif args.metric == "swd":
        value = sliced_wasserstein(real, syn, n_projections=args.projections, seed=args.seed)
    elif args.metric == "fd":
        value = frechet_distance(real, syn)
    else:
        value = prdc(real, syn, k=args.k)
    return value


def _cmd_embed(args: argparse.Namespace) -> int:
    p = check_exists(args.data, "--data")
    metadata = None
    if p.is_dir():
        data, names = image_folder(p, args.resize, "L" if args.grayscale else "RGB")
        metadata = {"file": names}
    elif p.suffix.lower() == ".npy":
        try:
            data = np.load(p, mmap_mode="c", allow_pickle=False)  # copy-on-write: writable, file untouched
        except Exception as exc:
            raise InputError(f"--data: {p}: not a readable .npy file ({first_line(exc)})") from exc
        if data.ndim < 2 or data.shape[0] == 0 or data.dtype.kind not in "biuf":
            raise InputError(f"--data: {p}: expected a non-empty numeric array (N, ...); "
                             f"got shape {data.shape}, dtype {data.dtype}")
        if data.dtype.kind == "f" and not np.isfinite(data).all():
            raise InputError(f"--data: {p}: NaN or Inf in the inputs")
    else:
        raise InputError(f"--data: {p}: expected a folder of {'/'.join(IMAGE_SUFFIXES)} images or a .npy file")
    model = import_factory(args.model)
    if hasattr(model, "eval"):
        model.eval()
    embedder = Embedder(model, layer=args.layer, pool=args.pool, batch_size=args.batch_size,
                        device=args.device)
    store = embedder.to_store(data, args.out, metadata=metadata, overwrite=args.overwrite,
                              resume=args.resume)
    print(f"wrote {store.count} embeddings of dimension {store.dim} to {store.path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
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
                   help="runs Python code from that module: imports PKG.MODULE (the current folder is "
                        "searched last) and calls FACTORY, a class or a function, with no arguments for "
                        "the model; or FACTORY is a torch.nn.Module, used as it is")
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
        print(simgap.__version__)
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away: BrokenPipeError here, not at exit (code 120)
        return code
    except KeyboardInterrupt as exc:
        print("simgap: interrupted", file=sys.stderr)
        if isinstance(exc, Abandoned):  # a worker thread still computes: do not wait for it
            exit_now(EXIT_INTERRUPTED)
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
        print(f"simgap {args.command}: error: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
