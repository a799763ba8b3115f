// kernel_matrix on the GEMM route: a Gram tile G computed by cuBLAS (through
// torch, on the caller's stream) turned into kernel values with the same
// per-pair math as the fused route and the CPU tiles (tile::gram_value).
// Also the kernel values that kernel_contract's GEMM route contracts with a
// float64 GEMM when there are more weight columns than gram_contract takes.
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "simgap/kernel_math.h"
#include "simgap/static_switch.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

constexpr int kThreads = 256;

template <KernelType KT, typename T, typename OutT>
__global__ void __launch_bounds__(kThreads) values_kernel(GramTileParams<T> p, OutT* out,
                                                          int64_t ld_out) {
  // A block row of 256 threads walks one tile row; rows on grid.y (looping).
  for (int64_t i = blockIdx.y; i < p.rows; i += gridDim.y) {
    const T* g = p.gram + i * p.ld_gram;
    OutT* o = out + i * ld_out;
    for (int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x; j < p.cols;
         j += int64_t(gridDim.x) * kThreads)
      o[j] = OutT(tile::gram_value<KT, T>(p, i, j, g[j]));
  }
}

}  // namespace

template <typename T, typename OutT>
cudaError_t gram_kernel_values(const GramTileParams<T>& p, OutT* out, int64_t ld_out,
                               cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.gram == nullptr || out == nullptr || p.ld_gram < p.cols || ld_out < p.cols)
    return cudaErrorInvalidValue;
  const dim3 grid(tile::clamp_grid((p.cols + kThreads - 1) / kThreads, 65535),
                  tile::clamp_grid(p.rows, 65535));
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    values_kernel<KT, T, OutT><<<grid, kThreads, 0, stream>>>(p, out, ld_out);
  });
  return cudaGetLastError();
}

template cudaError_t gram_kernel_values<float, float>(const GramTileParams<float>&, float*,
                                                      int64_t, cudaStream_t);
template cudaError_t gram_kernel_values<float, double>(const GramTileParams<float>&, double*,
                                                       int64_t, cudaStream_t);
template cudaError_t gram_kernel_values<double, double>(const GramTileParams<double>&, double*,
                                                        int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
