// radius_stats on the GPU (the k-NN ball statistics behind precision, recall,
// density, coverage and the realism score): for each Gram tile of the centred
// queries and references computed by cuBLAS (through torch, on the caller's
// stream), one fused kernel counts the balls that contain each query and keeps
// the largest radius^2 / distance^2, recomputing exactly the pairs near a
// ball's boundary or near-duplicates (tile::exact_d2, the CPU's arithmetic).
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps per block, one warp per query row
constexpr double kTinyDouble = 2.2250738585072014e-308;  // DBL_MIN
constexpr double kInfDouble = __builtin_huge_val();

template <typename T>
__global__ void __launch_bounds__(kThreads) radius_rows_kernel(GramRadiusParams<T> p) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t i = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32; i < p.rows;
       i += warps) {
    const int64_t gi = p.row0 + i;
    const double qn = p.xnorms[gi];
    const T* g = p.gram + i * p.ld_gram;
    long long cnt = 0;
    double best = 0.0;
    for (int64_t j = lane; j < p.cols; j += 32) {
      const int64_t gj = p.col0 + j;
      const double r2 = p.radii2[gj];
      if (!(r2 >= 0.0)) continue;  // an ignored reference
      const double scale = qn + p.ynorms[gj];
      double d2 = scale - 2.0 * double(g[j]);
      d2 = d2 > 0.0 ? d2 : 0.0;
      bool inside = d2 < r2;
      const double gap = d2 > r2 ? d2 - r2 : r2 - d2;
      if (d2 < scale / 32.0 || gap <= p.band * scale) {
        d2 = tile::exact_d2(p.x + gi * p.d, p.y + gj * p.d, p.d);
        inside = sqrt(d2) < p.radii[gj];
      }
      cnt += inside ? 1 : 0;
      // A copy of a kept reference is infinitely realistic, with radius 0 too.
      const double ratio = d2 > 0.0 ? r2 / (d2 > kTinyDouble ? d2 : kTinyDouble) : kInfDouble;
      best = ratio > best ? ratio : best;
    }
    for (int off = 16; off > 0; off /= 2) {
      cnt += __shfl_down_sync(0xffffffffu, cnt, off);
      const double o = __shfl_down_sync(0xffffffffu, best, off);
      best = o > best ? o : best;
    }
    if (lane == 0) {
      p.count[gi] += cnt;
      const double old = p.max_ratio[gi];
      p.max_ratio[gi] = best > old ? best : old;
    }
  }
}

}  // namespace

template <typename T>
cudaError_t gram_radius(const GramRadiusParams<T>& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.gram == nullptr || p.ld_gram < p.cols || p.xnorms == nullptr || p.ynorms == nullptr ||
      p.x == nullptr || p.y == nullptr || p.d < 1 || p.radii == nullptr || p.radii2 == nullptr ||
      p.count == nullptr || p.max_ratio == nullptr || !(p.band >= 0.0))
    return cudaErrorInvalidValue;
  const unsigned blocks = tile::clamp_grid((p.rows + kThreads / 32 - 1) / (kThreads / 32), 1 << 20);
  radius_rows_kernel<T><<<blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template cudaError_t gram_radius<float>(const GramRadiusParams<float>&, cudaStream_t);
template cudaError_t gram_radius<double>(const GramRadiusParams<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
