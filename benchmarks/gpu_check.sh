#!/usr/bin/env bash
# Issue 4's device check in ONE call on a GPU machine (no network, torch with
# CUDA already installed): build for Hopper only, run the gpu-marked tests,
# then the benchmark.  Logs and the table go to $OUT (or ./gpu-out).
#
#   bash benchmarks/gpu_check.sh            # build + tests + full benchmark (~10 min budget)
#   QUICK=1 bash benchmarks/gpu_check.sh    # benchmark up to n = 10^5 only
#   STEPS="build tests" bash benchmarks/gpu_check.sh   # then, on the same warm machine,
#   STEPS=bench bash benchmarks/gpu_check.sh           # when one call's time limit is too short
#   STEPS="sanitize" ...                               # compute-sanitizer memcheck + racecheck, a subset
set -uo pipefail
steps=${STEPS:-build tests bench}
has() { [[ " $steps " == *" $1 "* ]]; }
out=${OUT:-gpu-out}
mkdir -p "$out"
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
nvcc --version | tail -2 | tee -a "$out/gpu.txt"
# What the build and the tests import, checked before the (slow) build.
if ! $py -c "import scikit_build_core, pybind11, pytest, pytest_timeout, numpy, scipy, pandas, sklearn, torch; \
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1 | tee -a "$out/gpu.txt"; then
  echo "missing build or test dependencies" >&2
  exit 4
fi
start=$(date +%s)
if has build; then
  if ! $py -m pip install --no-build-isolation --no-deps \
      -C cmake.define.SIMGAP_CUDA=ON -C cmake.define.SIMGAP_CUDA_ARCHITECTURES=90-real . \
      >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log"
    exit 3
  fi
  echo "build: $(( $(date +%s) - start )) s"
fi
cd /tmp  # import the installed package, not the source tree
# Without a working CUDA module every gpu test would skip and the run would look green.
if ! $py -c "import simgap, simgap._cuda as c; print(simgap.backends(), simgap.build_info()); \
assert c.driver_version() >= c.runtime_version(), 'the driver is older than the CUDA runtime built in'; \
assert simgap.backends()['cuda'] and c.device_count() > 0, 'no CUDA module or no visible GPU'" \
  2>&1 | tee -a "$out/gpu.txt"; then
  echo "simgap's CUDA module does not work here: see $out/gpu.txt" >&2
  exit 5
fi
cd - >/dev/null
tests_rc=0
if has tests; then
  # No -x: one failure must not hide the others (the run is the only one for a while).
  # Synchronous launches: a fault inside a kernel is reported by the call that made it.
  CUDA_LAUNCH_BLOCKING=1 $py -m pytest tests -m gpu -q -p no:cacheprovider -rfEs --continue-on-collection-errors --timeout=300 \
    --junitxml="$out/junit.xml" 2>&1 | tee "$out/gpu_tests.log" | tail -60
  tests_rc=${PIPESTATUS[0]}
  # The device tests must have run, not skipped.
  if ! $py - "$out/junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
cases = [c for c in ET.parse(sys.argv[1]).iter("testcase") if c.get("classname", "").endswith("test_cuda")]
ran = [c for c in cases if c.find("skipped") is None]
print(f"tests/test_cuda.py: {len(ran)} of {len(cases)} ran")
sys.exit(0 if ran else 1)
PY
  then
    echo "no test of tests/test_cuda.py ran on the GPU" >&2
    tests_rc=6
  fi
  echo "gpu tests: rc=$tests_rc, $(( $(date +%s) - start )) s"
fi
if has sanitize; then  # opt-in (Firecracker machines): memory and race checks on a small subset
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 \
      $py -m pytest tests/test_cuda.py -q -p no:cacheprovider -k "gaussian and (both_routes or tensor_core_route_matches) and not 4097 and not 1025 and not 257" \
      2>&1 | tee "$out/sanitize_$tool.log" | tail -15
    echo "compute-sanitizer $tool: rc=${PIPESTATUS[0]}"
  done
fi
bench_rc=0
if has bench; then
  $py benchmarks/gpu_bench.py ${QUICK:+--quick} --out "$out/gpu_bench.md" 2>&1 | tee "$out/gpu_bench.log"
  bench_rc=${PIPESTATUS[0]}
  echo "benchmark: rc=$bench_rc, $(( $(date +%s) - start )) s"
fi
exit $(( tests_rc != 0 ? tests_rc : bench_rc ))
