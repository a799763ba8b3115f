// kernel_contract on the GPU, the fused tensor-core route (precision "tf32" /
// "bf16", few features; behind a flag until GPU timings choose it):
// out += K(x, y) @ W with the Gram tile computed by WMMA (mma.sync) from
// shared memory and never written to global memory, in the style of
// flash-attention.  A block of 4 warps owns a 64 x 64 tile of pairs: each warp
// accumulates a 32 x 32 quarter as 2 x 2 fragments of 16 x 16 (fp32
// accumulation) over slices of 32 features; the tile then goes to shared
// memory, where the same per-pair math as the other routes turns it into
// kernel values and the 128 threads contract it with the weights (two threads
// per row, combined by a shuffle, added to out in float64 atomically).
//
// The operands are the centred rows already rounded by the Python layer
// (Operand): float32 values that are exact in tf32, or a bf16 copy; their
// float64 squared norms come from the rounded values, so d2 = |x|^2 + |y|^2 -
// 2 g is consistent.  Needs compute capability 8.0 or newer (checked by the
// launcher); compiled to an empty body for older targets.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "simgap/cuda_ops.h"
#include "simgap/kernel_math.h"
#include "simgap/static_switch.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

namespace wmma = nvcuda::wmma;

// The tf32 / bf16 fragments exist from sm_80; older device passes compile an
// empty kernel (the launcher never starts it there).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define SIMGAP_TC_AVAILABLE 0
#pragma nv_diag_suppress 177  // the shapes and helpers the empty kernel does not use
#else
#define SIMGAP_TC_AVAILABLE 1
#endif

constexpr int kTcTile = 64;       // pairs per block side
constexpr int kTcChunk = 32;      // features per shared-memory slice
constexpr int kTcThreads = 128;   // 4 warps
constexpr int kTcLdC = kTcTile + 4;

template <typename In>
struct TcShape;
template <>
struct TcShape<float> {  // tf32: m16n16k8, float storage
  static constexpr int kK = 8;
  static constexpr int kLd = kTcChunk + 4;  // ldm: a multiple of 4 floats
#if SIMGAP_TC_AVAILABLE
  using Frag = wmma::precision::tf32;
#else
  using Frag = float;
#endif
};
template <>
struct TcShape<__nv_bfloat16> {  // bf16: m16n16k16
  static constexpr int kK = 16;
  static constexpr int kLd = kTcChunk + 8;  // ldm: a multiple of 8 halves
  using Frag = __nv_bfloat16;
};

// Fragment pointers must be 32-byte aligned: the member offsets (64 * kLd *
// sizeof(In) bytes), 16-row and kK-column steps are all multiples of 32.
template <typename In>
struct __align__(128) TcShared {
  In a[kTcTile][TcShape<In>::kLd];
  In b[kTcTile][TcShape<In>::kLd];
  float c[kTcTile][kTcLdC];
};

template <typename In>
__device__ __forceinline__ In tc_zero();
template <>
__device__ __forceinline__ float tc_zero<float>() { return 0.0f; }
template <>
__device__ __forceinline__ __nv_bfloat16 tc_zero<__nv_bfloat16>() {
  return __float2bfloat16(0.0f);
}

// k for the pair (gi, gj) from its Gram entry g: the per-pair math of the
// other routes (no exact re-computation of near-duplicates below "highest").
template <KernelType KT>
__device__ __forceinline__ float tc_value(const TcContractParams& p, int64_t gi, int64_t gj,
                                          float g) {
  if (p.same && gi == gj) {
    if (p.exclude_diagonal) return 0.0f;
    if (uses_distance(KT)) return kernel_value<KT, float>(0.0f, g, p.kernel);
  }
  float d2 = 0.0f;
  if (uses_distance(KT)) {
    const float nsum = float(p.xnorms[gi] + p.ynorms[gj]);
    d2 = nsum - 2.0f * g;
    d2 = d2 > 0.0f ? d2 : 0.0f;
  }
  return kernel_value<KT, float>(d2, g, p.kernel);
}

// One 64 x 64 tile: target[i0 + i] += sum_j k(x_{i0+i}, y_{j0+j}) w_{j0+j}.
template <KernelType KT, typename In>
__device__ __forceinline__ void tc_tile(const TcContractParams& p, int64_t i0, int64_t j0, double* target,
                                        TcShared<In>& sh) {
#if defined(__CUDA_ARCH__) && SIMGAP_TC_AVAILABLE
  using Shape = TcShape<In>;
  using Frag = typename Shape::Frag;
  constexpr int kK = Shape::kK, kLd = Shape::kLd;
  const In* __restrict__ x = static_cast<const In*>(p.x);
  const In* __restrict__ y = static_cast<const In*>(p.y);
  const int64_t n = p.n, m = p.m, d = p.d, q = p.q;
  const int tid = threadIdx.x, warp = tid / 32;
  const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;  // the warp's quarter of the tile
  const int r = tid / 2, h = tid % 2;                     // epilogue: row r, columns h, h+2, ...
  const int64_t gi = i0 + r;

  wmma::fragment<wmma::accumulator, 16, 16, kK, float> acc[2][2];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int b = 0; b < 2; ++b) wmma::fill_fragment(acc[a][b], 0.0f);

  for (int64_t k0 = 0; k0 < d; k0 += kTcChunk) {
    for (int e = tid; e < kTcTile * kTcChunk; e += kTcThreads) {
      const int row = e / kTcChunk, kk = e % kTcChunk;
      const int64_t gk = k0 + kk, xi = i0 + row, yj = j0 + row;
      sh.a[row][kk] = (xi < n && gk < d) ? x[xi * d + gk] : tc_zero<In>();
      sh.b[row][kk] = (yj < m && gk < d) ? y[yj * d + gk] : tc_zero<In>();
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTcChunk; kk += kK) {
      wmma::fragment<wmma::matrix_a, 16, 16, kK, Frag, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, kK, Frag, wmma::col_major> fb[2];
#pragma unroll
      for (int a = 0; a < 2; ++a) {
        wmma::load_matrix_sync(fa[a], &sh.a[wr + 16 * a][kk], kLd);
        wmma::load_matrix_sync(fb[a], &sh.b[wc + 16 * a][kk], kLd);  // B = Y^T: column-major
        if constexpr (sizeof(In) == 4) {
#pragma unroll
          for (int t = 0; t < fa[a].num_elements; ++t) fa[a].x[t] = wmma::__float_to_tf32(fa[a].x[t]);
#pragma unroll
          for (int t = 0; t < fb[a].num_elements; ++t) fb[a].x[t] = wmma::__float_to_tf32(fb[a].x[t]);
        }
      }
#pragma unroll
      for (int a = 0; a < 2; ++a)
#pragma unroll
        for (int b = 0; b < 2; ++b) wmma::mma_sync(acc[a][b], fa[a], fb[b], acc[a][b]);
    }
    __syncthreads();  // before the next slice overwrites a and b
  }
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int b = 0; b < 2; ++b)
      wmma::store_matrix_sync(&sh.c[wr + 16 * a][wc + 16 * b], acc[a][b], kTcLdC, wmma::mem_row_major);
  __syncthreads();

  // Kernel values in place: each element is read and written by one thread.
  for (int t = 0; t < kTcTile / 2; ++t) {
    const int col = h + 2 * t;
    const int64_t gj = j0 + col;
    sh.c[r][col] = (gi < n && gj < m) ? tc_value<KT>(p, gi, gj, sh.c[r][col]) : 0.0f;
  }
  for (int64_t c = 0; c < q; ++c) {
    float part = 0.0f;
    for (int t = 0; t < kTcTile / 2; ++t) {
      const int col = h + 2 * t;
      const int64_t gj = j0 + col;
      if (gj < m) part += sh.c[r][col] * p.weights[gj * q + c];
    }
    part += __shfl_xor_sync(0xffffffffu, part, 1);  // the two threads of row r are lanes 2k, 2k+1
    if (h == 0 && gi < n) atomicAdd(target + gi * q + c, double(part));
  }
  __syncthreads();  // c (and a, b) are overwritten by the next tile
#endif
}

template <KernelType KT, typename In>
__global__ void __launch_bounds__(kTcThreads) contract_tc_kernel(TcContractParams p) {
  __shared__ TcShared<In> sh;
  const int64_t nt = (p.m + kTcTile - 1) / kTcTile;
  // Plain: x tile blockIdx.x against the y tiles on grid.y (looping).
  // Symmetric sums (upper): the tiles on and above the diagonal, folded
  // (tile::folded_tile, as kernel_contract.cu); the tile side is the same.
  static_assert(kTcTile == tile::kTile, "the fold's tiles");
  const bool upper = p.upper != nullptr;
  const int64_t slots = upper ? nt + 1 : nt;
  for (int64_t c = blockIdx.y; c < slots; c += gridDim.y) {
    int64_t it = blockIdx.x, jt = c;
    if (upper && !tile::folded_tile(nt, blockIdx.x, c, it, jt)) continue;  // uniform in the block
    tc_tile<KT, In>(p, it * kTcTile, jt * kTcTile, (upper && jt > it) ? p.upper : p.out, sh);
  }
}

}  // namespace

cudaError_t contract_tc(const TcContractParams& p, cudaStream_t stream) {
  if (p.n < 0 || p.m < 0 || p.q < 0 || p.d < 0) return cudaErrorInvalidValue;
  if (p.n == 0 || p.m == 0 || p.q == 0) return cudaSuccess;
  if (p.d == 0 || p.x == nullptr || p.y == nullptr || p.weights == nullptr || p.out == nullptr ||
      p.xnorms == nullptr || p.ynorms == nullptr)
    return cudaErrorInvalidValue;
  if (p.upper != nullptr && !(p.same && p.n == p.m)) return cudaErrorInvalidValue;
  int device = 0, major = 0;
  cudaError_t st = cudaGetDevice(&device);
  if (st != cudaSuccess) return st;
  st = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (st != cudaSuccess) return st;
  if (major < 8) return cudaErrorNotSupported;  // tf32 / bf16 mma need sm_80+
  const int64_t xt = (p.n + kTcTile - 1) / kTcTile, yt = (p.m + kTcTile - 1) / kTcTile;
  if (xt > 0x7fffffff) return cudaErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(xt), static_cast<unsigned>(yt < 65535 ? yt : 65535));
  if (p.upper != nullptr) grid = tile::folded_grid(xt);
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    if (p.bf16)
      contract_tc_kernel<KT, __nv_bfloat16><<<grid, kTcThreads, 0, stream>>>(p);
    else
      contract_tc_kernel<KT, float><<<grid, kTcThreads, 0, stream>>>(p);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace simgap
