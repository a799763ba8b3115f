// kernel_matrix on the GPU, the fused route (few features, precision
// "highest"): the explicit n x m kernel matrix, tile by tile.  The GEMM route
// is kernel_matrix_gemm.cu.
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "simgap/static_switch.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

template <KernelType KT, typename T>
__global__ void __launch_bounds__(256) matrix_kernel(MatrixParams<T> p,
                                                     const double* __restrict__ xn,
                                                     const double* __restrict__ yn) {
  __shared__ tile::Shared<T> sh;
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols;
  const int64_t i0 = int64_t(blockIdx.x) * tile::kTile;
  const int64_t ytiles = (m + tile::kTile - 1) / tile::kTile;
  for (int64_t jt = blockIdx.y; jt < ytiles; jt += gridDim.y) {
    const int64_t j0 = jt * tile::kTile;
    T acc[tile::kReg][tile::kReg];
    tile::gram(p.x.ptr, n, p.y.ptr, m, d, p.center, i0, j0, sh, acc);
    tile::epilogue<KT, T>(p, xn, yn, i0, j0, false, acc);
#pragma unroll
    for (int i = 0; i < tile::kReg; ++i) {
      const int64_t gi = i0 + threadIdx.y * tile::kReg + i;
      if (gi >= n) continue;
#pragma unroll
      for (int j = 0; j < tile::kReg; ++j) {
        const int64_t gj = j0 + threadIdx.x * tile::kReg + j;
        if (gj < m) p.out[gi * m + gj] = acc[i][j];
      }
    }
  }
}

}  // namespace

template <typename T>
cudaError_t kernel_matrix(const MatrixParams<T>& p, const double* xnorms, const double* ynorms,
                          cudaStream_t stream) {
  if (p.x.rows == 0 || p.y.rows == 0) return cudaSuccess;
  if (p.x.cols == 0) return cudaErrorInvalidValue;
  const dim3 grid = tile::grid_dim(p.x.rows, p.y.rows), block = tile::block_dim();
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    matrix_kernel<KT, T><<<grid, block, 0, stream>>>(p, xnorms, ynorms);
  });
  return cudaGetLastError();
}

template cudaError_t kernel_matrix<float>(const MatrixParams<float>&, const double*, const double*,
                                          cudaStream_t);
template cudaError_t kernel_matrix<double>(const MatrixParams<double>&, const double*,
                                           const double*, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
