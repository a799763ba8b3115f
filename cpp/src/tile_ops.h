// The compute-bound inner pieces of every CPU operation, compiled once per
// instruction set (tile_ops_isa.cpp) and chosen at run time (cpu_dispatch.cpp).
// The drivers (one file per operation) own threads and buffers and call these
// through a table of function pointers, so no code compiled for a wider
// instruction set can leak into the generic path.
#pragma once

#include <cstdint>

#include "simgap/common.h"

namespace simgap {
namespace cpu {

// Rows per tile edge: a multiple of every panel width below.
constexpr int64_t kTile = 192;

template <typename T>
struct TileOps {
  const char* isa;
  int mr;  // panel width for x rows
  int nr;  // panel width for y rows

  // Pack rows [r0, r0 + rows) of v (minus center, if given) into panels of
  // `panel` rows, k-major: buf[(p * d + k) * panel + i].  Rows are padded with
  // zeros up to a multiple of `panel`; norms[r] = ||packed row r||^2.
  void (*pack)(const MatrixView<T>& v, const double* center, int64_t r0, int64_t rows,
               int panel, T* buf, T* norms);

  // K[i * ldk + j] = k(x_i, y_j) for the packed x panels (ni rows) and y panels
  // (nj rows).  With raw, K holds ||x_i - y_j||^2 (distance kernels) or
  // <x_i, y_j> (the others) instead, for apply_tile to finish.
  void (*kernel_tile)(const KernelParams& kp, const T* xp, const T* xn, int64_t ni,
                      const T* yp, const T* yn, int64_t nj, int64_t d, T* K, int64_t ldk,
                      bool raw);

  // In place, K[i * ldk + j] (raw statistic) -> kernel value, i < ni, j < nj.
  void (*apply_tile)(const KernelParams& kp, T* K, int64_t ldk, int64_t ni, int64_t nj);

  // Register-blocked: out[i * ldo + c] += sum_j K[i * ldk + j] * W[j * ldw + c]
  // for c < q.  scratch holds at least gemm_scratch(ni, nj, q) elements.
  void (*contract_gemm)(const T* K, int64_t ldk, int64_t ni, int64_t nj, const T* W,
                        int64_t ldw, int64_t q, double* out, int64_t ldo, T* scratch);

  // out[i * ldo + c] += sum_j K[i * ldk + j] * bt[c * ldb + j]
  void (*contract_tile)(const T* K, int64_t ldk, int64_t ni, int64_t nj, const T* bt,
                        int64_t ldb, int64_t q, double* out, int64_t ldo);

  // sum_i a_i sum_j K[i * ldk + j] b_j  (a null means ones)
  double (*sum_tile)(const T* K, int64_t ldk, int64_t ni, int64_t nj, const double* a,
                     const T* b);
};

template <typename T>
const TileOps<T>& tile_ops();

// Scratch elements contract_gemm needs.
template <typename T>
int64_t gemm_scratch(const TileOps<T>& ops, int64_t ni, int64_t nj, int64_t q) {
  const int64_t mi = (ni + ops.mr - 1) / ops.mr * ops.mr;
  const int64_t qc = (q + ops.nr - 1) / ops.nr * ops.nr;
  return (mi + qc) * nj;
}

}  // namespace cpu
}  // namespace simgap
