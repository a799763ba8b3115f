"""The ``simgap`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    import simgap
    from ._backend import build_info

    info = {"version": simgap.__version__, "backends": simgap.backends(), **build_info()}
    print(json.dumps(info, indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """A first look: backends, then the gap between two generated samples."""
    import numpy as np

    import simgap

    print(f"simgap {simgap.__version__}  backends: {simgap.backends()}")
    rng = np.random.default_rng(args.seed)
    n = 1000 if args.quick else 5000
    d = 64
    real = rng.normal(size=(n, d)).astype(np.float32)
    print(f"real: {n} samples of {d} features; synthetic sets shifted by a growing offset")
    print(f"{'shift':>6} {'MMD^2 (unbiased)':>17} {'sliced W2':>10} {'seconds':>8}")
    for shift in (0.0, 0.1, 0.3, 1.0):
        syn = rng.normal(loc=shift, size=(n, d)).astype(np.float32)
        t0 = time.perf_counter()
        m = simgap.mmd2(real, syn, bandwidth=simgap.median_bandwidth(real, syn))
        sw = simgap.sliced_wasserstein(real, syn, n_projections=128, seed=args.seed)
        print(f"{shift:6.2f} {m:17.6f} {sw:10.4f} {time.perf_counter() - t0:8.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simgap",
        description="Measure and close the gap between synthetic and real data.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    p_info = sub.add_parser("info", help="print the version, backends and build details as JSON")
    p_info.set_defaults(func=_cmd_info)
    p_demo = sub.add_parser("demo", help="run the built-in demonstration")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p_demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import simgap

        print(simgap.__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
