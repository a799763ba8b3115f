// The pieces shared by the CUDA operations.  The fused route's tiles
// (kernel_contract.cu, kernel_matrix.cu): a block of 16 x 16 threads evaluates
// a 64 x 64 tile of pairs, each thread a 4 x 4 register block; x and y are
// staged through shared memory in slices of 16 features, centred and rounded
// to T as on the CPU.  The GEMM route's per-pair value from a cuBLAS Gram tile
// (kernel_contract_gemm.cu, kernel_matrix_gemm.cu).  The exact float64
// distance (also k-NN and radius statistics), the symmetric fold and launch
// shapes.  The per-pair math is simgap/kernel_math.h, the same code as the
// CPU tiles.
#pragma once

#include <cuda_runtime.h>

#include "simgap/common.h"
#include "simgap/cuda_ops.h"
#include "simgap/kernel_math.h"
#include "simgap/ops.h"

namespace simgap {
namespace cuda {
namespace tile {

constexpr int kThreads = 16;            // threads per block side
constexpr int kReg = 4;                 // pairs per thread side
constexpr int kTile = kThreads * kReg;  // 64 pairs per block side
constexpr int kSlice = 16;              // features per shared-memory slice

template <typename T>
struct Shared {
  T a[kSlice][kTile + 1];
  T b[kSlice][kTile + 1];
};

// acc[i][j] = <x_{i0 + ty*4 + i} - c, y_{j0 + tx*4 + j} - c> (0 outside the matrices).
template <typename T>
__device__ __forceinline__ void gram(const T* __restrict__ x, int64_t n, const T* __restrict__ y,
                                     int64_t m, int64_t d, const double* __restrict__ center,
                                     int64_t i0, int64_t j0, Shared<T>& sh, T (&acc)[kReg][kReg]) {
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kThreads + tx;
#pragma unroll
  for (int i = 0; i < kReg; ++i)
#pragma unroll
    for (int j = 0; j < kReg; ++j) acc[i][j] = T(0);
  for (int64_t k0 = 0; k0 < d; k0 += kSlice) {
    for (int e = tid; e < kTile * kSlice; e += kThreads * kThreads) {
      const int r = e / kSlice, kk = e % kSlice;
      const int64_t gk = k0 + kk;
      const int64_t gi = i0 + r, gj = j0 + r;
      const double c = (center != nullptr && gk < d) ? center[gk] : 0.0;
      sh.a[kk][r] = (gi < n && gk < d) ? T(double(x[gi * d + gk]) - c) : T(0);
      sh.b[kk][r] = (gj < m && gk < d) ? T(double(y[gj * d + gk]) - c) : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSlice; ++kk) {
      T av[kReg], bv[kReg];
#pragma unroll
      for (int i = 0; i < kReg; ++i) av[i] = sh.a[kk][ty * kReg + i];
#pragma unroll
      for (int j = 0; j < kReg; ++j) bv[j] = sh.b[kk][tx * kReg + j];
#pragma unroll
      for (int i = 0; i < kReg; ++i)
#pragma unroll
        for (int j = 0; j < kReg; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }
}

// The exact squared distance of two rows in float64 (for near-duplicates of
// root kernels, and the k-NN radii and ball tests).  The accumulation is an
// explicit fma in feature order, so every kernel that calls it gets the same
// bits for the same pair (either order: (a - b)^2 == (b - a)^2 exactly): a
// k-NN radius and a ball test of the same pair of points agree exactly.
template <typename T>
__device__ __forceinline__ double exact_d2(const T* __restrict__ a, const T* __restrict__ b,
                                           int64_t d) {
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) {
    const double t = double(a[k]) - double(b[k]);
    s = fma(t, t, s);
  }
  return s;
}

// Kernel values of the thread's 4 x 4 block (0 outside the matrices).
template <KernelType KT, typename T>
__device__ __forceinline__ void epilogue(const PairParams<T>& p, const double* __restrict__ xn,
                                         const double* __restrict__ yn, int64_t i0, int64_t j0,
                                         bool exclude_diagonal, T (&acc)[kReg][kReg]) {
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols;
  const T tau = sizeof(T) == 4 ? T(1.0 / 32.0) : T(1e-6);
  constexpr bool kRoot = uses_root_distance(KT);
#pragma unroll
  for (int i = 0; i < kReg; ++i) {
    const int64_t gi = i0 + threadIdx.y * kReg + i;
#pragma unroll
    for (int j = 0; j < kReg; ++j) {
      const int64_t gj = j0 + threadIdx.x * kReg + j;
      if (gi >= n || gj >= m) {
        acc[i][j] = T(0);
        continue;
      }
      const T g = acc[i][j];
      const T nsum = T(xn[gi] + yn[gj]);
      T d2 = nsum - T(2) * g;
      d2 = d2 > T(0) ? d2 : T(0);
      if (kRoot && d2 < tau * nsum) d2 = T(exact_d2(p.x.ptr + gi * d, p.y.ptr + gj * d, d));
      T v = kernel_value<KT, T>(d2, g, p.kernel);
      if (p.same && gi == gj) {
        // x_i with itself: exactly k(0) for distance kernels; dot kernels keep <x_i, x_i>.
        if (exclude_diagonal) v = T(0);
        else if (uses_distance(KT)) v = kernel_value<KT, T>(T(0), g, p.kernel);
      }
      acc[i][j] = v;
    }
  }
}

// The GEMM route: k for the pair (row0 + i, col0 + j) of a Gram tile, from its
// entry g.  Same formula as epilogue above: the squared distance in T from the
// float64 norms, clamped at 0, recomputed exactly for near-duplicates under
// root kernels (when the tile has the rows: x non-null), and the exact value
// on the diagonal.
template <KernelType KT, typename T>
__device__ __forceinline__ T gram_value(const GramTileParams<T>& p, int64_t i, int64_t j, T g) {
  const int64_t gi = p.row0 + i, gj = p.col0 + j;
  if (p.same && gi == gj) {
    if (p.exclude_diagonal) return T(0);
    if (uses_distance(KT)) return kernel_value<KT, T>(T(0), g, p.kernel);
  }
  constexpr bool kRoot = uses_root_distance(KT);
  T d2 = T(0);
  if (uses_distance(KT)) {
    const T nsum = T(p.xnorms[gi] + p.ynorms[gj]);
    d2 = nsum - T(2) * g;
    d2 = d2 > T(0) ? d2 : T(0);
    const T tau = sizeof(T) == 4 ? T(1.0 / 32.0) : T(1e-6);
    if (kRoot && p.x != nullptr && d2 < tau * nsum)
      d2 = T(exact_d2(p.x + gi * p.d, p.y + gj * p.d, p.d));
  }
  return kernel_value<KT, T>(d2, g, p.kernel);
}

// Symmetric sums over nt x nt tiles need only the tiles on and above the
// diagonal.  Folded so that no block idles: block a (of ceil(nt / 2)) owns tile
// row a (nt - a tiles) and tile row nt - 1 - a (a + 1 tiles), nt + 1 slots in
// all; slot c maps to the tile (it, jt).  False for the spare slot of the
// middle row when nt is odd (the same for the whole block).
__device__ __forceinline__ bool folded_tile(int64_t nt, int64_t a, int64_t c, int64_t& it, int64_t& jt) {
  const int64_t b = nt - 1 - a;
  if (c < nt - a) {
    it = a;
    jt = a + c;
    return true;
  }
  if (a == b) return false;
  it = b;
  jt = b + (c - (nt - a));
  return true;
}

// The grid of a folded symmetric sum: ceil(nt / 2) x (nt + 1) slots (grid.y capped, looping).
inline dim3 folded_grid(int64_t nt) {
  return dim3(static_cast<unsigned>((nt + 1) / 2), static_cast<unsigned>(nt + 1 < 65535 ? nt + 1 : 65535));
}

// A grid side of `want` blocks, at least 1 and at most cap (the kernels loop).
inline unsigned clamp_grid(int64_t want, int64_t cap) {
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

inline dim3 block_dim() { return dim3(kThreads, kThreads); }

// x tiles on grid.x, y tiles on grid.y (the kernels loop when there are more
// y tiles than grid.y allows).
inline dim3 grid_dim(int64_t n, int64_t m) {
  const int64_t tx = (n + kTile - 1) / kTile, ty = (m + kTile - 1) / kTile;
  return dim3(static_cast<unsigned>(tx), static_cast<unsigned>(ty < 65535 ? ty : 65535));
}

}  // namespace tile
}  // namespace cuda
}  // namespace simgap
