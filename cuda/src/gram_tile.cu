// The GEMM path's fused kernels: a Gram tile G computed by cuBLAS (through
// torch, on the caller's stream) is turned into kernel values with the same
// per-pair math as the CPU tiles (simgap/kernel_math.h), either written out
// (kernel_matrix, many-column contractions) or contracted at once with a few
// weight columns in float64 (mmd2: one column), so that G is read once; and
// the k-NN ball statistics (gram_radius) read off the same tiles.
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "simgap/kernel_math.h"
#include "simgap/static_switch.h"
#include "tile_common.cuh"

namespace simgap {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps per block
constexpr double kTinyDouble = 2.2250738585072014e-308;  // DBL_MIN
constexpr double kInfDouble = __builtin_huge_val();

// k for the pair (row0 + i, col0 + j) of the tile, from its Gram entry g.
// Same formula as the fused tile epilogue (tile_common.cuh): the squared
// distance in T from the float64 norms, clamped at 0, recomputed exactly for
// near-duplicates under root kernels, and the exact value on the diagonal.
template <KernelType KT, typename T>
__device__ __forceinline__ T pair_value(const GramTileParams<T>& p, int64_t i, int64_t j, T g) {
  const int64_t gi = p.row0 + i, gj = p.col0 + j;
  if (p.same && gi == gj) {
    if (p.exclude_diagonal) return T(0);
    if (uses_distance(KT)) return kernel_value<KT, T>(T(0), g, p.kernel);
  }
  constexpr bool kRoot = KT == KernelType::Laplacian || KT == KernelType::Energy;
  T d2 = T(0);
  if (uses_distance(KT)) {
    const T nsum = T(p.xnorms[gi] + p.ynorms[gj]);
    d2 = nsum - T(2) * g;
    d2 = d2 > T(0) ? d2 : T(0);
    const T tau = sizeof(T) == 4 ? T(1.0 / 32.0) : T(1e-6);
    if (kRoot && p.x != nullptr && d2 < tau * nsum)
      d2 = T(tile::exact_d2(p.x + gi * p.d, p.y + gj * p.d, p.d));
  }
  return kernel_value<KT, T>(d2, g, p.kernel);
}

template <KernelType KT, typename T, typename OutT>
__global__ void __launch_bounds__(kThreads) values_kernel(GramTileParams<T> p, OutT* out,
                                                          int64_t ld_out) {
  // A block row of 256 threads walks one tile row; rows on grid.y (looping).
  for (int64_t i = blockIdx.y; i < p.rows; i += gridDim.y) {
    const T* g = p.gram + i * p.ld_gram;
    OutT* o = out + i * ld_out;
    for (int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x; j < p.cols;
         j += int64_t(gridDim.x) * kThreads)
      o[j] = OutT(pair_value<KT, T>(p, i, j, g[j]));
  }
}

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
      const double v = double(pair_value<KT, T>(p, i, j, g[j]));
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

inline unsigned clamp_grid(int64_t want, int64_t cap) {
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

}  // namespace

template <typename T, typename OutT>
cudaError_t gram_kernel_values(const GramTileParams<T>& p, OutT* out, int64_t ld_out,
                               cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.gram == nullptr || out == nullptr || p.ld_gram < p.cols || ld_out < p.cols)
    return cudaErrorInvalidValue;
  const dim3 grid(clamp_grid((p.cols + kThreads - 1) / kThreads, 65535),
                  clamp_grid(p.rows, 65535));
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    values_kernel<KT, T, OutT><<<grid, kThreads, 0, stream>>>(p, out, ld_out);
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t gram_contract(const GramTileParams<T>& p, const T* weights, int64_t q, double* out,
                          cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0 || q == 0) return cudaSuccess;
  if (p.gram == nullptr || weights == nullptr || out == nullptr || p.ld_gram < p.cols ||
      q > kGramContractMaxColumns)
    return cudaErrorInvalidValue;
  const unsigned blocks = clamp_grid((p.rows + kThreads / 32 - 1) / (kThreads / 32), 1 << 20);
  SIMGAP_KERNEL_SWITCH(p.kernel.type, KT, [&] {
    contract_rows_kernel<KT, T><<<blocks, kThreads, 0, stream>>>(p, weights, q, out);
  });
  return cudaGetLastError();
}

template <typename T>
cudaError_t gram_radius(const GramRadiusParams<T>& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.gram == nullptr || p.ld_gram < p.cols || p.xnorms == nullptr || p.ynorms == nullptr ||
      p.x == nullptr || p.y == nullptr || p.d < 1 || p.radii == nullptr || p.radii2 == nullptr ||
      p.count == nullptr || p.max_ratio == nullptr || !(p.band >= 0.0))
    return cudaErrorInvalidValue;
  const unsigned blocks = clamp_grid((p.rows + kThreads / 32 - 1) / (kThreads / 32), 1 << 20);
  radius_rows_kernel<T><<<blocks, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
cudaError_t candidate_distances(const T* x, int64_t row0, int64_t rows, const T* y, int64_t m,
                                int64_t d, const int64_t* cand, int64_t c, double* out,
                                cudaStream_t stream) {
  if (rows == 0 || c == 0) return cudaSuccess;
  if (x == nullptr || y == nullptr || cand == nullptr || out == nullptr || rows < 0 || c < 0 ||
      row0 < 0 || d < 1)
    return cudaErrorInvalidValue;
  const unsigned blocks = clamp_grid((rows * c + kThreads - 1) / kThreads, 1 << 20);
  candidate_kernel<T><<<blocks, kThreads, 0, stream>>>(x, row0, rows, y, m, d, cand, c, out);
  return cudaGetLastError();
}

template cudaError_t gram_kernel_values<float, float>(const GramTileParams<float>&, float*,
                                                      int64_t, cudaStream_t);
template cudaError_t gram_kernel_values<float, double>(const GramTileParams<float>&, double*,
                                                       int64_t, cudaStream_t);
template cudaError_t gram_kernel_values<double, double>(const GramTileParams<double>&, double*,
                                                        int64_t, cudaStream_t);
template cudaError_t gram_contract<float>(const GramTileParams<float>&, const float*, int64_t,
                                          double*, cudaStream_t);
template cudaError_t gram_contract<double>(const GramTileParams<double>&, const double*, int64_t,
                                           double*, cudaStream_t);
template cudaError_t gram_radius<float>(const GramRadiusParams<float>&, cudaStream_t);
template cudaError_t gram_radius<double>(const GramRadiusParams<double>&, cudaStream_t);
template cudaError_t candidate_distances<float>(const float*, int64_t, int64_t, const float*, int64_t,
                                                int64_t, const int64_t*, int64_t, double*,
                                                cudaStream_t);
template cudaError_t candidate_distances<double>(const double*, int64_t, int64_t, const double*,
                                                 int64_t, int64_t, const int64_t*, int64_t, double*,
                                                 cudaStream_t);

}  // namespace cuda
}  // namespace simgap
