// Chooses, once per process, the instruction set the tile loops run with.
// SIMGAP_CPU_ISA=generic|avx2|avx512 in the environment forces a choice (for
// tests and benchmarks); an unsupported request falls back to the best
// supported one below it.
#include <cstdlib>
#include <cstring>

#include "simgap/ops.h"
#include "tile_ops.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace simgap {
namespace cpu {

#define SIMGAP_DECLARE_ISA(NS)              \
  namespace NS {                            \
  const TileOps<float>& ops_f32();          \
  const TileOps<double>& ops_f64();         \
  }
SIMGAP_DECLARE_ISA(isa_generic)
#if defined(SIMGAP_HAVE_AVX2)
SIMGAP_DECLARE_ISA(isa_avx2)
#endif
#if defined(SIMGAP_HAVE_AVX512)
SIMGAP_DECLARE_ISA(isa_avx512)
#endif
#undef SIMGAP_DECLARE_ISA

namespace {

enum class Isa { Generic, Avx2, Avx512 };

Isa detect() {
  Isa best = Isa::Generic;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#if defined(SIMGAP_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::Avx2;
#endif
#if defined(SIMGAP_HAVE_AVX512)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    best = Isa::Avx512;
#endif
#endif
  const char* want = std::getenv("SIMGAP_CPU_ISA");
  if (want != nullptr) {
    Isa req = best;
    if (std::strcmp(want, "generic") == 0) req = Isa::Generic;
    else if (std::strcmp(want, "avx2") == 0) req = Isa::Avx2;
    else if (std::strcmp(want, "avx512") == 0) req = Isa::Avx512;
    if (static_cast<int>(req) < static_cast<int>(best)) best = req;
  }
  return best;
}

Isa chosen() {
  static const Isa isa = detect();
  return isa;
}

}  // namespace

template <>
const TileOps<float>& tile_ops<float>() {
  switch (chosen()) {
#if defined(SIMGAP_HAVE_AVX512)
    case Isa::Avx512: return isa_avx512::ops_f32();
#endif
#if defined(SIMGAP_HAVE_AVX2)
    case Isa::Avx2: return isa_avx2::ops_f32();
#endif
    default: return isa_generic::ops_f32();
  }
}

template <>
const TileOps<double>& tile_ops<double>() {
  switch (chosen()) {
#if defined(SIMGAP_HAVE_AVX512)
    case Isa::Avx512: return isa_avx512::ops_f64();
#endif
#if defined(SIMGAP_HAVE_AVX2)
    case Isa::Avx2: return isa_avx2::ops_f64();
#endif
    default: return isa_generic::ops_f64();
  }
}

const char* isa_name() { return tile_ops<float>().isa; }

int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace cpu
}  // namespace simgap
