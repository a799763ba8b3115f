// The squared norms of the centred rows, in float64, that every tiled
// operation reads (both routes of kernel_contract and kernel_matrix; the GEMM
// route's operands): one warp per row, the centred values rounded to T first,
// as the tiles see them.
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"

namespace simgap {
namespace cuda {

namespace {

template <typename T>
__global__ void row_norms_kernel(const T* __restrict__ x, int64_t n, int64_t d,
                                 const double* __restrict__ center, double* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= n) return;
  double s = 0.0;
  for (int64_t k = lane; k < d; k += 32) {
    const double v = double(T(double(x[row * d + k]) - (center ? center[k] : 0.0)));
    s += v * v;
  }
  for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
  if (lane == 0) out[row] = s;
}

}  // namespace

template <typename T>
cudaError_t row_norms(const MatrixView<T>& x, const double* center, double* norms,
                      cudaStream_t stream) {
  if (x.rows == 0) return cudaSuccess;
  const int rows_per_block = 8;  // one warp per row
  const int64_t blocks = (x.rows + rows_per_block - 1) / rows_per_block;
  row_norms_kernel<T><<<static_cast<unsigned>(blocks), rows_per_block * 32, 0, stream>>>(
      x.ptr, x.rows, x.cols, center, norms);
  return cudaGetLastError();
}

template cudaError_t row_norms<float>(const MatrixView<float>&, const double*, double*, cudaStream_t);
template cudaError_t row_norms<double>(const MatrixView<double>&, const double*, double*, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
