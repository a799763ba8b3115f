"""Measure the extra peak memory of one simgap call, in a fresh process.

Usage: python benchmarks/_peak_memory.py N D [estimator]
Prints one JSON line: inputs' size, extra peak RSS (VmHWM after the call minus
VmRSS before it, with the peak counter reset), the value and the seconds.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def proc_status(field: str) -> int:
    """A byte count from /proc/self/status (VmRSS, VmHWM, ...)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def main() -> None:
    n, d = int(sys.argv[1]), int(sys.argv[2])
    estimator = sys.argv[3] if len(sys.argv) > 3 else "unbiased"
    import simgap

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = rng.standard_normal((n, d), dtype=np.float32)
    y += np.float32(0.02)
    simgap.mmd2(x[:300], y[:300], bandwidth=32.0)  # load everything once
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS counter
    before = proc_status("VmRSS")
    t0 = time.perf_counter()
    value = simgap.mmd2(x, y, bandwidth=32.0, estimator=estimator)
    seconds = time.perf_counter() - t0
    peak = proc_status("VmHWM")
    print(json.dumps({
        "n": n, "m": n, "d": d, "estimator": estimator, "inputs_mb": (x.nbytes + y.nbytes) / 2**20,
        "extra_peak_mb": (peak - before) / 2**20, "value": value, "seconds": seconds,
    }))


if __name__ == "__main__":
    main()
