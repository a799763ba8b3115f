#!/usr/bin/env bash
# Issue 4's device check in ONE call on a GPU machine (no network, torch with
# CUDA already installed): build for Hopper only, run the gpu-marked tests,
# then the benchmark.  Logs and the table go to $OUT (or ./gpu-out).
#
#   bash benchmarks/gpu_check.sh            # build + tests + full benchmark (~10 min budget)
#   QUICK=1 bash benchmarks/gpu_check.sh    # benchmark up to n = 10^5 only
set -uo pipefail
out=${OUT:-gpu-out}
mkdir -p "$out"
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
start=$(date +%s)
if ! $py -m pip install --no-build-isolation --no-deps \
    -C cmake.define.SIMGAP_CUDA=ON -C cmake.define.SIMGAP_CUDA_ARCHITECTURES=90-real . \
    >"$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  exit 3
fi
echo "build: $(( $(date +%s) - start )) s"
cd /tmp  # import the installed package, not the source tree
$py -c "import simgap; print(simgap.backends(), simgap.build_info())" | tee -a "$out/gpu.txt"
cd - >/dev/null
$py -m pytest tests -m gpu -q -p no:cacheprovider -x --timeout=300 2>&1 | tee "$out/gpu_tests.log" | tail -40
tests_rc=${PIPESTATUS[0]}
echo "gpu tests: rc=$tests_rc, $(( $(date +%s) - start )) s"
$py benchmarks/gpu_bench.py ${QUICK:+--quick} --out "$out/gpu_bench.md" 2>&1 | tee "$out/gpu_bench.log"
bench_rc=${PIPESTATUS[0]}
echo "benchmark: rc=$bench_rc, $(( $(date +%s) - start )) s"
exit $(( tests_rc != 0 ? tests_rc : bench_rc ))
