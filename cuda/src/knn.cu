// knn on the GPU: the candidates come from torch (Gram-identity distances of
// cuBLAS tiles and a running top-(k + slack)); this file re-ranks them by
// their exact float64 distances (tile::exact_d2, the same arithmetic as the
// CPU and as radius_stats.cu, so a k-NN radius and a ball test of the same
// two points agree to the bit).
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr double kInfDouble = __builtin_huge_val();

template <typename T>
__global__ void __launch_bounds__(kThreads) candidate_kernel(const T* __restrict__ x, int64_t row0,
                                                             int64_t rows, const T* __restrict__ y,
                                                             int64_t m, int64_t d,
                                                             const int64_t* __restrict__ cand,
                                                             int64_t c, double* __restrict__ out) {
  const int64_t total = rows * c;
  for (int64_t t = int64_t(blockIdx.x) * kThreads + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * kThreads) {
    const int64_t i = t / c, j = cand[t];
    out[t] = (j < 0 || j >= m) ? kInfDouble
                               : sqrt(tile::exact_d2(x + (row0 + i) * d, y + j * d, d));
  }
}

}  // namespace

template <typename T>
cudaError_t candidate_distances(const T* x, int64_t row0, int64_t rows, const T* y, int64_t m,
                                int64_t d, const int64_t* cand, int64_t c, double* out,
                                cudaStream_t stream) {
  if (rows == 0 || c == 0) return cudaSuccess;
  if (x == nullptr || y == nullptr || cand == nullptr || out == nullptr || rows < 0 || c < 0 ||
      row0 < 0 || d < 1)
    return cudaErrorInvalidValue;
  const unsigned blocks = tile::clamp_grid((rows * c + kThreads - 1) / kThreads, 1 << 20);
  candidate_kernel<T><<<blocks, kThreads, 0, stream>>>(x, row0, rows, y, m, d, cand, c, out);
  return cudaGetLastError();
}

template cudaError_t candidate_distances<float>(const float*, int64_t, int64_t, const float*, int64_t,
                                                int64_t, const int64_t*, int64_t, double*,
                                                cudaStream_t);
template cudaError_t candidate_distances<double>(const double*, int64_t, int64_t, const double*,
                                                 int64_t, int64_t, const int64_t*, int64_t, double*,
                                                 cudaStream_t);

}  // namespace cuda
}  // namespace simgap
