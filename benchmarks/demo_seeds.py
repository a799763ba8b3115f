"""``simgap demo`` over several seeds: the before/after table and the wall time.

The improvement must be real and reproducible: for each seed the full demo runs in this process
(``run_demo``, the same code as ``simgap demo``) and its before/after numbers are collected; then
``simgap demo`` runs once more as a user runs it (a fresh process, default settings) for the wall
time of the command.  Gaps are measured in the fixed space of each run's round-0 CNN (see
``simgap.demo``).

    python benchmarks/demo_seeds.py                       # seeds 0..4, then the timed command
    python benchmarks/demo_seeds.py --seeds 3 --threads 1 --json demo_seeds.json

Prints a markdown table for benchmarks/RESULTS.md, with the machine (CPU model, cores available)
and the thread count used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the CNN (default 1, as the demo)")
    parser.add_argument("--quick", action="store_true", help="the --quick demo instead of the full one")
    parser.add_argument("--no-cli", action="store_true", help="skip the timed `simgap demo` run")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from simgap.demo import run_demo

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            cpu0, t0 = _cpu_seconds(), time.perf_counter()
            res = run_demo(seed=seed, out=os.path.join(tmp, f"seed{seed}"), quick=args.quick,
                           threads=args.threads, verbose=False, progress=False)
            wall, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
            rows.append({"seed": seed, "before": res.before, "after": res.after, "wall_s": wall,
                         "cpu_s": cpu, "threads": res.threads, "timings": res.timings})
            b, a = res.before, res.after
            print(f"seed {seed}: MMD² {b['mmd2']:.4f} -> {a['mmd2']:.4f}, C2ST {b['c2st_auc']:.3f} -> "
                  f"{a['c2st_auc']:.3f}, accuracy {b['accuracy_real']:.1%} -> {a['accuracy_real']:.1%} "
                  f"({wall:.1f} s wall, {cpu:.1f} s CPU)", file=sys.stderr, flush=True)
        cli = None
        if not args.no_cli:
            cmd = [sys.executable, "-m", "simgap", "demo", "--out", os.path.join(tmp, "cli")]
            if args.quick:
                cmd.append("--quick")
            if args.threads != 1:
                cmd += ["--threads", str(args.threads)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            cli = {"command": "simgap demo" + (" --quick" if args.quick else "")
                   + (f" --threads {args.threads}" if args.threads != 1 else ""),
                   "wall_s": time.perf_counter() - t0, "returncode": proc.returncode}

    def cell(key, fmt, r):
        return f"{fmt.format(r['before'][key])} → {fmt.format(r['after'][key])}"

    print(f"\nMachine: {_cpu_model()}, {cores} CPU cores available; torch threads {rows[0]['threads']}; "
          f"{'quick' if args.quick else 'full'} demo; Python {platform.python_version()}\n")
    print("| seed | MMD² (round-0 CNN space) | MMD² (retrained CNN space) | C2ST AUC | coverage "
          "| accuracy on real digits | wall s | CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {cell('mmd2', '{:.4f}', r)} | {cell('mmd2_final_space', '{:.4f}', r)} "
              f"| {cell('c2st_auc', '{:.3f}', r)} | {cell('coverage', '{:.3f}', r)} "
              f"| {cell('accuracy_real', '{:.1%}', r)} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    improved = sum(r["after"]["mmd2"] < r["before"]["mmd2"]
                   and r["after"]["accuracy_real"] > r["before"]["accuracy_real"] for r in rows)
    print(f"\nGap fell and real accuracy rose for {improved} of {len(rows)} seeds.")
    if cli is not None:
        print(f"`{cli['command']}` (fresh process, seed 0): {cli['wall_s']:.1f} s wall, "
              f"exit code {cli['returncode']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": _cpu_model(), "cores": cores, "rows": rows, "cli": cli}, fh, indent=1)
    return 0 if improved == len(rows) and (cli is None or cli["returncode"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
