// Helpers shared by the operation drivers (generic code only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simgap/kernel_math.h"
#include "simgap/ops.h"
#include "tile_ops.h"

#if defined(_OPENMP)
#include <omp.h>
#define SIMGAP_THREAD_ID() omp_get_thread_num()
#else
#define SIMGAP_THREAD_ID() 0
#endif

namespace simgap {
namespace cpu {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Rows of x per block: kTile, or fewer so that every thread gets a few blocks.
inline int64_t choose_row_block(int64_t n, int threads, int mr) {
  const int64_t want = ceil_div(n, int64_t(4) * threads);
  const int64_t b = ceil_div(want, mr) * mr;
  return std::max<int64_t>(mr, std::min<int64_t>(kTile, b));
}

// The centre vector to subtract, only for kernels that are translation invariant.
template <typename T>
const double* center_for(const PairParams<T>& p) {
  return uses_distance(p.kernel.type) ? p.center : nullptr;
}

// On the tiles where x and y are the same points, make the diagonal exact:
// k(x_i, x_i) = k(0), or 0 when the diagonal is excluded.
template <typename T>
void fix_diagonal(const KernelParams& kp, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K,
                  int64_t ldk, bool exclude) {
  const int64_t lo = std::max(i0, j0), hi = std::min(i0 + ni, j0 + nj);
  if (lo >= hi) return;
  T k0 = T(0);
  if (!exclude && uses_distance(kp.type)) {
    switch (kp.type) {
      case KernelType::Gaussian: k0 = kernel_at_zero<KernelType::Gaussian, T>(kp); break;
      case KernelType::Laplacian: k0 = kernel_at_zero<KernelType::Laplacian, T>(kp); break;
      case KernelType::IMQ: k0 = kernel_at_zero<KernelType::IMQ, T>(kp); break;
      default: k0 = kernel_at_zero<KernelType::Energy, T>(kp); break;
    }
  }
  for (int64_t g = lo; g < hi; ++g) {
    T& v = K[(g - i0) * ldk + (g - j0)];
    if (exclude || uses_distance(kp.type)) v = k0;
  }
}

// One thread's scratch: a contiguous slice of a buffer allocated before the
// parallel region (so an allocation failure raises in the caller's thread).
template <typename T>
struct Scratch {
  std::vector<T> mem;
  int64_t per = 0;
  Scratch(int threads, int64_t per_thread) : mem(size_t(threads) * size_t(per_thread)), per(per_thread) {}
  T* slot(int t) { return mem.data() + int64_t(t) * per; }
};

}  // namespace cpu
}  // namespace simgap
