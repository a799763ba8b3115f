"""Issue 4's GPU benchmark: correctness first, then times and ratios in one run.

Builds nothing: run it after ``pip install --no-build-isolation --no-deps .`` on
a machine with a CUDA GPU and a CUDA build of torch.

    python benchmarks/gpu_bench.py                      # the full table
    python benchmarks/gpu_bench.py --quick              # n <= 10^5, a smoke run
    python benchmarks/gpu_bench.py --out results.md     # also write the table

1. Correctness on fresh random data (seeded by the clock, printed): simgap on
   the GPU against a float64 reference (torch float64 on the GPU, direct
   differences), for MMD^2 on both routes and precisions, the kernel
   contraction, mmd2_batch, mmd_test and sliced Wasserstein; k-NN distances,
   prdc (with copied samples, and of a set with itself) against the CPU,
   exactly.  Failures are
   listed (and written above the table); the timings still run, and the exit
   status is 1.
2. Timings (CUDA-synchronised, after a warm-up; median of ``--repeats`` below
   10^6 rows, one run at 10^6), over n = m in {10^4, 10^5, 10^6} and
   d in {64, 512}:

   * exact unbiased gaussian MMD^2 (fp32, precision "highest"): simgap on its
     default route, on each forced route, with tf32 and bf16 (default route,
     and for d <= 128 the fused tensor-core route, forced); torch naive
     (cdist, exp, means; "OOM" when it cannot allocate); the floor, cuBLAS
     SGEMM (IEEE fp32) for the multiply-adds simgap evaluates: the self blocks'
     upper tiles and the cross block, about n(n+1)/2 + m(m+1)/2 + nm pairs of
     d multiply-adds, timed on a 8192 x 8192 x d GEMM and scaled by pairs;
   * sliced Wasserstein (256 projections, p = 2): simgap against torch naive
     (matmul, torch.sort, mean) and SGEMM of the projection's shape.

Targets (issue 4): MMD^2 at n = m = 10^5, d = 512 within 1.3x of the SGEMM
floor; MMD^2 at 10^6 completes; sliced at 10^6, d = 512, >= 5x faster than
torch naive.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import sys
import time

import torch

import simgap
from simgap._ops import cuda as _cuda_ops
from simgap._ops import dispatch as _dispatch


def sync():
    torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: bool = True):
    """Median seconds of fn() over repeats (after one warm-up call); its last result."""
    if warmup:
        fn()
    times, out = [], None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def try_time(fn, repeats: int, warmup: bool = True):
    try:
        return timed(fn, repeats, warmup)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None, None


# ---- float64 references on the device (direct differences) ----------------------------------

def ref_ksum(a, b, sigma, same, chunk=4096):
    total = 0.0
    for i in range(0, a.shape[0], chunk):
        d2 = torch.cdist(a[i:i + chunk], b, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        total += float(torch.exp(-d2 / (2 * sigma * sigma)).sum())
    return total - (a.shape[0] if same else 0.0)


def ref_mmd2(x, y, sigma):
    x, y = x.double(), y.double()
    n, m = x.shape[0], y.shape[0]
    return (ref_ksum(x, x, sigma, True) / (n * (n - 1)) + ref_ksum(y, y, sigma, True) / (m * (m - 1))
            - 2 * ref_ksum(x, y, sigma, False) / (n * m))


def ref_sliced(x, y, theta, p=2.0):
    px = torch.sort(x.double() @ theta, dim=0).values
    py = torch.sort(y.double() @ theta, dim=0).values
    return float(((px - py).abs() ** p).mean()) ** (1 / p)


# ---- baselines ---------------------------------------------------------------------------------

def naive_mmd2(x, y, sigma):
    """cdist + exp + means, one full n x m matrix at a time (in place where possible)."""
    n, m = x.shape[0], y.shape[0]

    def ksum(a, b, same):
        k = torch.cdist(a, b)
        k.pow_(2).mul_(-1.0 / (2 * sigma * sigma)).exp_()
        s = k.sum(dtype=torch.float64) - (k.diagonal().sum(dtype=torch.float64) if same else 0.0)
        del k
        return s

    return float(ksum(x, x, True) / (n * (n - 1)) + ksum(y, y, True) / (m * (m - 1))
                 - 2 * ksum(x, y, False) / (n * m))


def naive_sliced(x, y, theta):
    px = torch.sort(x @ theta, dim=0).values
    py = torch.sort(y @ theta, dim=0).values
    return float(((px - py) ** 2).mean()) ** 0.5


def sgemm_seconds(d: int, pairs: float, repeats: int) -> float:
    """IEEE fp32 cuBLAS time for `pairs` inner products of length d (8192^2 tiles)."""
    side = 8192
    a = torch.randn(side, d, device="cuda")
    b = torch.randn(side, d, device="cuda")
    with _cuda_ops.fp32_matmul("ieee"):
        t, _ = timed(lambda: torch.mm(a, b.t()), repeats)
    return t * pairs / (side * side)


def sgemm_shape_seconds(n: int, d: int, k: int, repeats: int) -> float:
    a = torch.randn(n, d, device="cuda")
    b = torch.randn(d, k, device="cuda")
    with _cuda_ops.fp32_matmul("ieee"):
        t, _ = timed(lambda: torch.mm(a, b), repeats)
    return t


# ---- correctness ----------------------------------------------------------------------------------

# MMD^2 errors are measured against max(|MMD^2|, FLOOR): near zero (y of 7 rows,
# or two samples of one law) a relative error means nothing, and the kernel
# terms whose rounding makes the error are about exp(-1) ~ 0.37 here.
FLOOR = 0.1


def check(name, got, ref, tol, failures, floor=FLOOR):
    err = abs(got - ref) / max(abs(ref), floor)
    report(f"{name}: {got:.9g} vs float64 {ref:.9g}", err, tol, failures)


def report(what, err, tol, failures):
    ok = err <= tol
    print(f"  {'ok  ' if ok else 'FAIL'} {what} (rel {err:.2e} <= {tol:g})")
    if not ok:
        failures.append(what)


def correctness(seed: int) -> list[str]:
    print(f"correctness (seed {seed}):")
    g = torch.Generator(device="cuda").manual_seed(seed)
    failures: list[str] = []
    for n, m, d in ((2049, 1537, 64), (1025, 2048, 512), (4097, 7, 129)):
        x = torch.randn(n, d, device="cuda", generator=g)
        y = torch.randn(m, d, device="cuda", generator=g) + 0.1
        sigma = math.sqrt(d)
        ref = ref_mmd2(x, y, sigma)
        for route in ("fused", "gemm"):
            _dispatch.FORCE_ROUTE = route
            check(f"mmd2 {n}x{m}x{d} fp32 {route}", simgap.mmd2(x, y, bandwidth=sigma), ref, 1e-4, failures)
            check(f"mmd2 {n}x{m}x{d} fp64 {route}", simgap.mmd2(x.double(), y.double(), bandwidth=sigma),
                  ref, 1e-7, failures)
        _dispatch.FORCE_ROUTE = None
        check(f"mmd2 {n}x{m}x{d} tf32", simgap.mmd2(x, y, bandwidth=sigma, precision="tf32"), ref, 1e-3,
              failures)
        check(f"mmd2 {n}x{m}x{d} bf16", simgap.mmd2(x, y, bandwidth=sigma, precision="bf16"), ref, 1e-2,
              failures)
        if d <= 128:  # the fused tensor-core route (off by default until these numbers say otherwise)
            _dispatch.FORCE_ROUTE = "fused_tc"
            for prec, tol in (("tf32", 1e-3), ("bf16", 1e-2)):
                check(f"mmd2 {n}x{m}x{d} {prec} fused_tc", simgap.mmd2(x, y, bandwidth=sigma, precision=prec),
                      ref, tol, failures)
            _dispatch.FORCE_ROUTE = None
        w = torch.randn(m, 3, device="cuda", generator=g)
        got = simgap.kernel_contract(x, y, w, bandwidth=sigma)
        xd, yd = x.double(), y.double()
        want = torch.exp(-torch.cdist(xd, yd, compute_mode="donot_use_mm_for_euclid_dist") ** 2
                         / (2 * sigma * sigma)) @ w.double()
        report(f"kernel_contract {n}x{m}x{d} q=3, max |error| / max |value|",
               float((got - want).abs().max()) / float(want.abs().max()), 1e-4, failures)
        batch = simgap.mmd2_batch(x, [y, y[: max(2, m // 2)]], bandwidth=sigma)
        check(f"mmd2_batch[0] {n}x{m}x{d}", float(batch[0]), ref, 1e-4, failures)
        theta = torch.randn(d, 64, device="cuda", dtype=torch.float64, generator=g)
        theta /= theta.norm(dim=0, keepdim=True)
        k = min(n, m)  # the sort-and-subtract reference needs equal sizes
        check(f"sliced {k}x{k}x{d}", simgap.sliced_wasserstein(x[:k], y[:k], projections=theta),
              ref_sliced(x[:k], y[:k], theta), 1e-4, failures, floor=1e-12)
    x = torch.randn(70001, 16, device="cuda", generator=g)
    y = torch.randn(70001, 16, device="cuda", generator=g) * 1.2
    theta = torch.randn(16, 32, device="cuda", dtype=torch.float64, generator=g)
    theta /= theta.norm(dim=0, keepdim=True)
    check("sliced 70001x70001x16 (per-row device sort)", simgap.sliced_wasserstein(x, y, projections=theta),
          ref_sliced(x, y, theta), 1e-4, failures, floor=1e-12)
    # float64 on both sides: the same relabellings give the same null distribution.
    xs = torch.randn(300, 8, device="cuda", generator=g, dtype=torch.float64)
    ys = torch.randn(257, 8, device="cuda", generator=g, dtype=torch.float64) + 0.1
    gpu = simgap.mmd_test(xs, ys, 200, seed=1)
    cpu = simgap.mmd_test(xs.cpu().numpy(), ys.cpu().numpy(), 200, seed=1)
    check("mmd_test statistic (GPU vs CPU, same relabellings, fp64)", gpu.statistic, cpu.statistic, 1e-9,
          failures, floor=1e-3)
    null_err = float(abs(gpu.null_distribution - cpu.null_distribution).max())
    report("mmd_test null distribution (GPU vs CPU, fp64), max |difference| / 1e-3", null_err / 1e-3, 1e-9,
           failures)
    if gpu.p_value != cpu.p_value:
        print(f"  note mmd_test p-value GPU {gpu.p_value} vs CPU {cpu.p_value}")
    try:
        neighbour_checks(g, failures)
    except Exception as exc:  # a crash here must not cost the timings
        failures.append(f"k-NN checks raised {type(exc).__name__}: {exc}")
        print(f"  FAIL k-NN checks raised {type(exc).__name__}: {exc}")
    return failures


def neighbour_checks(g, failures: list[str]) -> None:
    """k-NN distances, prdc and realism on the GPU against the CPU: the k-NN
    distances are exact float64 on both (the same fma arithmetic, so equal to
    the bit), and ball tests on the boundary are decided the same way, so prdc
    is equal exactly, ties from copied samples included."""
    real = torch.randn(3001, 24, device="cuda", generator=g)
    fake = torch.cat([torch.randn(2000, 24, device="cuda", generator=g) * 1.1, real[:700]])
    rc, fc = real.cpu().numpy(), fake.cpu().numpy()
    d_gpu, i_gpu = simgap.nearest_neighbors(real, fake, k=5)
    d_cpu, i_cpu = simgap.nearest_neighbors(rc, fc, k=5)
    same = bool((d_gpu.cpu().numpy() == d_cpu).all()) and bool((i_gpu.cpu().numpy() == i_cpu).all())
    report("nearest_neighbors 3001x2700x24 k=5: GPU == CPU to the bit (1 = differs)", float(not same), 0.0,
           failures)
    p_gpu, p_cpu = simgap.prdc(real, fake, k=5), simgap.prdc(rc, fc, k=5)
    err = max(abs(p_gpu[key] - p_cpu[key]) for key in p_cpu)
    report(f"prdc with 700 copied real samples: GPU {p_gpu} vs CPU {p_cpu}", err, 0.0, failures)
    selfp = simgap.prdc(real, real, k=5)
    report(f"prdc(x, x) == 1 on the GPU: {selfp}", max(abs(v - 1.0) for v in selfp.values()), 0.0, failures)


# ---- timings ------------------------------------------------------------------------------------

def fmt(t):
    return "OOM" if t is None else f"{t:.4f}"


def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}"


def cell(t):
    return fmt(t) if t else "-"


TABLE_HEAD = ["| op | n = m | d | route | simgap s | other route s | tf32 s | bf16 s | fused_tc tf32 s | "
              "fused_tc bf16 s | torch naive s | SGEMM floor s | simgap / floor | naive / simgap |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def table_line(row) -> str:
    op, n, d, route, t, t_other, t_tf32, t_bf16, t_tc, t_naive, t_floor, _ = row
    return (f"| {op} | {n:,} | {d} | {route} | {fmt(t)} | {cell(t_other)} | {cell(t_tf32)} | "
            f"{cell(t_bf16)} | {cell(t_tc[0])} | {cell(t_tc[1])} | {fmt(t_naive)} | "
            f"{fmt(t_floor)} | {ratio(t, t_floor)} | {ratio(t_naive, t)} |")


def mmd_row(n, d, repeats, rows, emit):
    reps = repeats if n < 10**6 else 1
    warm = n < 10**6
    x = torch.randn(n, d, device="cuda")
    y = torch.randn(n, d, device="cuda") + 0.05
    sigma = math.sqrt(2 * d)
    pairs = n * (n + 1) / 2 * 2 + n * n
    t_floor = sgemm_seconds(d, pairs, 3)
    _dispatch.FORCE_ROUTE = None
    t_ours, v_ours = timed(lambda: simgap.mmd2(x, y, bandwidth=sigma), reps, warm)
    route = "gemm" if _dispatch.use_gemm(d, "highest") else "fused"
    other = "fused" if route == "gemm" else "gemm"
    t_other = None
    if n <= 10**5:
        _dispatch.FORCE_ROUTE = other
        t_other, _ = timed(lambda: simgap.mmd2(x, y, bandwidth=sigma), reps, warm)
        _dispatch.FORCE_ROUTE = None
    t_tf32, _ = timed(lambda: simgap.mmd2(x, y, bandwidth=sigma, precision="tf32"), reps, warm)
    t_bf16, _ = timed(lambda: simgap.mmd2(x, y, bandwidth=sigma, precision="bf16"), reps, warm)
    t_tc = (None, None)
    if d <= 128:  # the fused tensor-core route against the default (GEMM) route above
        _dispatch.FORCE_ROUTE = "fused_tc"
        t_tc = tuple(timed(lambda: simgap.mmd2(x, y, bandwidth=sigma, precision=prec), reps, warm)[0]
                     for prec in ("tf32", "bf16"))
        _dispatch.FORCE_ROUTE = None
    t_naive, _ = try_time(lambda: naive_mmd2(x, y, sigma), reps, warm)
    rows.append(("mmd2 gaussian fp32", n, d, route, t_ours, t_other, t_tf32, t_bf16, t_tc, t_naive,
                 t_floor, v_ours))
    emit(rows[-1])
    print(f"mmd2  n=m={n:>8} d={d:>4}  simgap[{route}] {fmt(t_ours)} s  [{other}] {fmt(t_other)} s  "
          f"tf32 {fmt(t_tf32)} s  bf16 {fmt(t_bf16)} s  fused_tc tf32 {cell(t_tc[0])} s  "
          f"bf16 {cell(t_tc[1])} s  naive {fmt(t_naive)} s  "
          f"SGEMM floor {fmt(t_floor)} s  simgap/floor {ratio(t_ours, t_floor)}  "
          f"naive/simgap {ratio(t_naive, t_ours)}", flush=True)
    x = y = None  # free the device memory before the next size
    torch.cuda.empty_cache()


def sliced_row(n, d, repeats, rows, emit):
    reps = repeats if n < 10**6 else 1
    x = torch.randn(n, d, device="cuda")
    y = torch.randn(n, d, device="cuda") * 1.1
    theta = torch.randn(d, 256, device="cuda")
    theta /= theta.norm(dim=0, keepdim=True)
    t_ours, _ = timed(lambda: simgap.sliced_wasserstein(x, y, projections=theta), reps)
    with _cuda_ops.fp32_matmul("ieee"):
        t_naive, _ = try_time(lambda: naive_sliced(x, y, theta), reps)
    t_floor = 2 * sgemm_shape_seconds(n, d, 256, 3)
    rows.append(("sliced 256 proj fp32", n, d, "cub", t_ours, None, None, None, (None, None), t_naive,
                 t_floor, None))
    emit(rows[-1])
    print(f"sliced n=m={n:>8} d={d:>4}  simgap {fmt(t_ours)} s  naive {fmt(t_naive)} s  "
          f"SGEMM(projection) {fmt(t_floor)} s  naive/simgap {ratio(t_naive, t_ours)}", flush=True)
    x = y = None  # free the device memory before the next size
    torch.cuda.empty_cache()


def bench(sizes, dims, repeats, rows, emit=lambda row: None):
    """Time every size, smallest first, sliced Wasserstein before MMD^2 at each
    size (the cheaper target first); each row goes to ``emit`` as soon as it is
    measured, so a run cut short by a time limit keeps what it measured."""
    for n in sizes:
        for d in dims:
            sliced_row(n, d, repeats, rows, emit)
        for d in dims:
            mmd_row(n, d, repeats, rows, emit)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n <= 10^5 only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None, help="seed of the correctness data (default: clock)")
    ap.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = ap.parse_args(argv)
    if not simgap.backends()["cuda"]:
        print("no CUDA device visible to simgap (simgap.backends() says cuda=False)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int(time.time()) % 2**31
    props = torch.cuda.get_device_properties(0)
    header = (f"{datetime.date.today()} {props.name} ({props.total_memory / 2**30:.0f} GiB), "
              f"torch {torch.__version__}, CUDA {torch.version.cuda}, simgap {simgap.__version__}, "
              f"{platform.node()}; command: python benchmarks/gpu_bench.py {' '.join(sys.argv[1:])}")
    print(header)
    failures = correctness(seed)
    if failures:
        print(f"{len(failures)} correctness check(s) failed (listed above); timing anyway", file=sys.stderr)
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6]
    rows: list = []
    lines = [header, ""] + TABLE_HEAD
    if failures:
        lines[1:1] = ["", f"correctness FAILED: {'; '.join(failures)}"]
    out = open(args.out, "w") if args.out else None
    if out:
        out.write("\n".join(lines) + "\n")
        out.flush()

    def emit(row):
        if out:
            out.write(table_line(row) + "\n")
            out.flush()

    try:
        bench(sizes, [64, 512], args.repeats, rows, emit)
    finally:
        if out:
            out.close()
    print()
    print("\n".join(lines + [table_line(r) for r in rows]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
