"""The SIMT CUDA kernels run on the CPU by a small emulator, against float64 references.

No GPU is needed: the kernel sources (``SOURCES`` in ``cuda/src``: one file per
operation, its GEMM route as ``*_gemm.cu``, and ``tile_common.cuh``) are
compiled by the host C++ compiler with ``tests/cuda_emu/emu.h`` standing in for
the CUDA runtime (one std::thread per CUDA thread, real block barriers, warp
shuffles, atomics under a mutex).  The only change made to the sources is
mechanical: each ``kernel<<<grid, block, 0, stream>>>(args)`` launch becomes
``emu::launch(grid, block, [&] { kernel(args); })`` and the grid caps (65535,
``1 << 20``) become ``EMU_CAP``, a variable of emu.h.
``tests/cuda_emu/driver.cpp`` then checks every operation (the fused
contraction, plain and symmetric; the fused matrix; the GEMM route's epilogues;
the elementwise kernel values of ``kernel_rowwise.cu``; the k-NN ball
statistics ``gram_radius`` with points exactly on ball boundaries, and the exact
``candidate_distances``, to the bit) on ragged sizes.  It is built once and run
with the real caps and with a cap of 2, where every grid-stride loop runs.
This catches indexing, tiling, synchronisation and symmetric-tile errors.  The
tensor-core contraction (``kernel_contract_tc.cu``) runs with
``tests/cuda_emu/mma.h`` standing in for WMMA, which checks everything but the
hardware's fragments; CUB (``sliced_wasserstein.cu``) and real timing need a
GPU (``tests/test_cuda.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EMU = Path(__file__).resolve().parent / "cuda_emu"
SOURCES = ["row_norms.cu", "kernel_contract.cu", "kernel_contract_gemm.cu", "kernel_matrix.cu",
           "kernel_matrix_gemm.cu", "kernel_rowwise.cu", "radius_stats.cu", "knn.cu"]
TC_SOURCE = "kernel_contract_tc.cu"
HEADERS = ["tile_common.cuh"]

_LAUNCH = re.compile(
    r"(?P<kernel>[A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(?P<grid>[^,]+?),\s*(?P<block>[^,]+?),\s*0,\s*stream>>>"
    r"\((?P<args>[^;]*?)\);",
    re.S,
)


def emulated_source(text: str) -> str:
    """The CUDA source with its launches rewritten for emu.h (and grid caps as EMU_CAP)."""
    out, n = _LAUNCH.subn(
        lambda m: f"emu::launch({m['grid'].strip()}, {m['block'].strip()}, [&] {{ "
                  f"{m['kernel']}({' '.join(m['args'].split())}); }});",
        text,
    )
    if "<<<" in out:
        raise AssertionError("a kernel launch the emulator rewrite does not understand: " +
                             out[out.index("<<<") - 80: out.index("<<<") + 80])
    out = out.replace("65535", "EMU_CAP").replace(", 1 << 20)", ", EMU_CAP)")
    return out


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler")
    return cxx


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda_emu")
    for name in SOURCES + HEADERS + [TC_SOURCE]:
        text = emulated_source((ROOT / "cuda" / "src" / name).read_text())
        if name == TC_SOURCE:  # the WMMA body is compiled for "sm_80+" only
            assert "#if defined(__CUDA_ARCH__) && SIMGAP_TC_AVAILABLE" in text
            text = text.replace("#if defined(__CUDA_ARCH__) && SIMGAP_TC_AVAILABLE", "#if SIMGAP_TC_AVAILABLE")
        (d / name).write_text(text)
    cxx = _compiler()
    probe = d / "probe.cpp"
    probe.write_text("#include <barrier>\nint main() { std::barrier<> b(1); b.arrive_and_wait(); }\n")
    if subprocess.run([cxx, "-std=c++20", "-pthread", str(probe), "-o", str(d / "probe")],
                      capture_output=True).returncode != 0:
        pytest.skip(f"{cxx} has no C++20 <barrier>")
    return d


def test_launch_rewrite():
    src = ("  foo_kernel<KT, T><<<grid, block, 0, stream>>>(p, a,\n      b);\n"
           "  bar<<<static_cast<unsigned>(n), 256, 0, stream>>>(x);\n")
    got = emulated_source(src)
    assert "emu::launch(grid, block, [&] { foo_kernel<KT, T>(p, a, b); });" in got
    assert "emu::launch(static_cast<unsigned>(n), 256, [&] { bar(x); });" in got


@pytest.fixture(scope="module")
def driver(sources):
    """tests/cuda_emu/driver.cpp with the SIMT sources, built once (the grid cap is an argument)."""
    exe = sources / "driver"
    cmd = [_compiler(), "-std=c++20", "-O1", "-pthread", f"-I{EMU}", f"-I{ROOT / 'cpp' / 'include'}",
           f"-I{ROOT / 'cuda' / 'include'}", f"-I{sources}", "-x", "c++", *[str(sources / s) for s in SOURCES],
           "-x", "none", str(EMU / "driver.cpp"), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    return exe


@pytest.mark.parametrize("cap,mode", [(65535, "quick"), (2, "stride")])
def test_simt_kernels_match_float64_reference(driver, cap, mode):
    run = subprocess.run([str(driver), mode, str(cap)], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0 and "failures=0" in run.stdout, (run.stdout[-4000:], run.stderr[-2000:])
    checks = int(re.search(r"checks=(\d+)", run.stdout).group(1))
    assert checks > 10_000


def test_tensor_core_contraction_with_emulated_wmma(sources):
    """kernel_contract_tc.cu with tests/cuda_emu/mma.h standing in for WMMA (every lane holds
    the whole fragment): the tiling, shared-memory layout and padding, fragment
    pointers and layouts, epilogue, symmetric fold and atomics against float64."""
    exe = sources / "driver_tc"
    cmd = [_compiler(), "-std=c++20", "-O1", "-pthread", f"-I{EMU}",
           f"-I{ROOT / 'cpp' / 'include'}", f"-I{ROOT / 'cuda' / 'include'}", f"-I{sources}", "-x", "c++",
           str(sources / TC_SOURCE), "-x", "none", str(EMU / "driver_tc.cpp"), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0 and "failures=0" in run.stdout, (run.stdout[-4000:], run.stderr[-2000:])
    assert int(re.search(r"checks=(\d+)", run.stdout).group(1)) > 1_000
