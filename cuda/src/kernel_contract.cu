// kernel_contract on the GPU, the fused route (few features, precision
// "highest"): out += K(x, y) @ W without forming K.  Each block evaluates a 64 x 64 tile of kernel values in registers, multiplies it with
// the matching 64 rows of W column by column, reduces over the 16 threads that
// share a row with warp shuffles and adds the row sums to out atomically (in
// float64).  The row norms come from row_norms.cu.  The other routes:
// kernel_contract_gemm.cu (cuBLAS Gram tiles) and kernel_contract_tc.cu
// (tensor cores, "tf32" / "bf16").
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "simgap/static_switch.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

// One 64 x 64 tile: target[i0 + i] += sum_j k(x_{i0+i}, y_{j0+j}) w_{j0+j}.
template <KernelType KT, typename T>
__device__ __forceinline__ void contract_tile(const ContractParams<T>& p, const double* __restrict__ xn,
                                              const double* __restrict__ yn, int64_t i0, int64_t j0,
                                              double* target, tile::Shared<T>& sh) {
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols, q = p.q;
  T acc[tile::kReg][tile::kReg];
  tile::gram(p.x.ptr, n, p.y.ptr, m, d, p.center, i0, j0, sh, acc);
  tile::epilogue<KT, T>(p, xn, yn, i0, j0, p.exclude_diagonal, acc);
  for (int64_t c = 0; c < q; ++c) {
    T part[tile::kReg];
#pragma unroll
    for (int i = 0; i < tile::kReg; ++i) part[i] = T(0);
#pragma unroll
    for (int j = 0; j < tile::kReg; ++j) {
      const int64_t gj = j0 + threadIdx.x * tile::kReg + j;
      const T w = gj < m ? p.weights[gj * q + c] : T(0);
#pragma unroll
      for (int i = 0; i < tile::kReg; ++i) part[i] += acc[i][j] * w;
    }
    // The 16 threads of a row group are 16 consecutive lanes of one warp.
#pragma unroll
    for (int i = 0; i < tile::kReg; ++i)
      for (int off = tile::kThreads / 2; off > 0; off /= 2)
        part[i] += __shfl_down_sync(0xffffffffu, part[i], off, tile::kThreads);
    if (threadIdx.x == 0) {
#pragma unroll
      for (int i = 0; i < tile::kReg; ++i) {
        const int64_t gi = i0 + threadIdx.y * tile::kReg + i;
        if (gi < n) atomicAdd(target + gi * q + c, double(part[i]));
      }
    }
  }
}

template <KernelType KT, typename T>
__global__ void __launch_bounds__(256) contract_kernel(ContractParams<T> p,
                                                       const double* __restrict__ xn,
                                                       const double* __restrict__ yn) {
  __shared__ tile::Shared<T> sh;
  const int64_t ytiles = (p.y.rows + tile::kTile - 1) / tile::kTile;
  if (p.upper == nullptr) {  // x tiles on grid.x, y tiles on grid.y (looping)
    const int64_t i0 = int64_t(blockIdx.x) * tile::kTile;
    for (int64_t jt = blockIdx.y; jt < ytiles; jt += gridDim.y)
      contract_tile<KT, T>(p, xn, yn, i0, jt * tile::kTile, p.out, sh);
    return;
  }
  // Symmetric sums (x is y): the tiles on and above the diagonal, folded
  // (tile::folded_tile).  Diagonal tiles go to out, those above it to upper
  // (w' K w = w' out + 2 w' upper).
  for (int64_t c = blockIdx.y; c <= ytiles; c += gridDim.y) {
    int64_t it, jt;
    if (!tile::folded_tile(ytiles, blockIdx.x, c, it, jt)) continue;
    contract_tile<KT, T>(p, xn, yn, it * tile::kTile, jt * tile::kTile, jt > it ? p.upper : p.out, sh);
  }
}

}  // namespace

template <typename T>
cudaError_t kernel_contract(const ContractParams<T>& p, const double* xnorms,
                            const double* ynorms, cudaStream_t stream) {
  if (p.x.rows == 0 || p.y.rows == 0 || p.q == 0) return cudaSuccess;
  if (p.x.cols == 0) return cudaErrorInvalidValue;
  if (p.upper != nullptr && !(p.same && p.x.rows == p.y.rows)) return cudaErrorInvalidValue;
  dim3 grid = tile::grid_dim(p.x.rows, p.y.rows);
  const dim3 block = tile::block_dim();
  if (p.upper != nullptr) grid = tile::folded_grid((p.x.rows + tile::kTile - 1) / tile::kTile);
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    contract_kernel<KT, T><<<grid, block, 0, stream>>>(p, xnorms, ynorms);
  });
  return cudaGetLastError();
}

template cudaError_t kernel_contract<float>(const ContractParams<float>&, const double*,
                                            const double*, cudaStream_t);
template cudaError_t kernel_contract<double>(const ContractParams<double>&, const double*,
                                             const double*, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
