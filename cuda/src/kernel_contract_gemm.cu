// kernel_contract on the GEMM route: a Gram tile G computed by cuBLAS
// (through torch, on the caller's stream) is turned into kernel values with
// the same per-pair math as the fused route and the CPU tiles
// (tile::gram_value) and contracted at once with a few weight columns in
// float64 (mmd2: one column), so that G is read once.  More columns go
// through kernel_matrix_gemm.cu's values and a float64 GEMM.
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "simgap/kernel_math.h"
#include "simgap/static_switch.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps per block

template <KernelType KT, typename T>
__global__ void __launch_bounds__(kThreads) contract_rows_kernel(GramTileParams<T> p,
                                                                 const T* __restrict__ w,
                                                                 int64_t q,
                                                                 double* __restrict__ out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t i = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32; i < p.rows;
       i += warps) {
    double acc[kGramContractMaxColumns];
#pragma unroll
    for (int c = 0; c < kGramContractMaxColumns; ++c) acc[c] = 0.0;
    const T* g = p.gram + i * p.ld_gram;
    for (int64_t j = lane; j < p.cols; j += 32) {
      const double v = double(tile::gram_value<KT, T>(p, i, j, g[j]));
      const T* wr = w + (p.col0 + j) * q;
#pragma unroll
      for (int c = 0; c < kGramContractMaxColumns; ++c)
        if (c < q) acc[c] += v * double(wr[c]);
    }
#pragma unroll
    for (int c = 0; c < kGramContractMaxColumns; ++c) {
      if (c >= q) break;
      double s = acc[c];
      for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
      if (lane == 0) out[(p.row0 + i) * q + c] += s;
    }
  }
}

}  // namespace

template <typename T>
cudaError_t gram_contract(const GramTileParams<T>& p, const T* weights, int64_t q, double* out,
                          cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0 || q == 0) return cudaSuccess;
  if (p.gram == nullptr || weights == nullptr || out == nullptr || p.ld_gram < p.cols ||
      q > kGramContractMaxColumns)
    return cudaErrorInvalidValue;
  const unsigned blocks = tile::clamp_grid((p.rows + kThreads / 32 - 1) / (kThreads / 32), 1 << 20);
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    contract_rows_kernel<KT, T><<<blocks, kThreads, 0, stream>>>(p, weights, q, out);
  });
  return cudaGetLastError();
}

template cudaError_t gram_contract<float>(const GramTileParams<float>&, const float*, int64_t,
                                          double*, cudaStream_t);
template cudaError_t gram_contract<double>(const GramTileParams<double>&, const double*, int64_t,
                                           double*, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
