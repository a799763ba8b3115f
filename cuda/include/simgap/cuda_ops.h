// Declarations of the CUDA launchers.  Plain C++ (no CUDA syntax), so the
// pybind11 binding compiles with the host compiler.  They take the same
// parameter structs as the CPU operations (simgap/ops.h) with device pointers;
// every launcher returns the status of what it launched, and empty input never
// launches.  Inputs must be C-contiguous (row_stride == cols, col_stride == 1,
// no row index): the Python layer makes them so.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "simgap/common.h"
#include "simgap/ops.h"

namespace simgap {
namespace cuda {

// ---- device_info.cu ---------------------------------------------------------
// Number of visible devices (0 when there is no driver or no GPU), and the
// runtime and driver versions (0 for the driver when none is installed).
int device_count();
int runtime_version();
int driver_version();

// ---- kernel_rowwise.cu ------------------------------------------------------
// out[i] = k evaluated from d2[i] (squared distance, clamped at 0) and g[i]
// (inner product) on the device, with the same per-pair math as the CPU tiles
// (simgap/kernel_math.h): the device half of kernel_rowwise, whose distances
// and inner products torch computes.  All pointers are device pointers.
template <typename T>
cudaError_t kernel_values(const KernelParams& kp, const T* d2, const T* g, T* out, int64_t n,
                          cudaStream_t stream);

// ---- row_norms.cu -----------------------------------------------------------
// Squared norms of the centred rows, in float64: norms[i] = ||x_i - center||^2
// with the centred values rounded to T first (as the tiles see them).
template <typename T>
cudaError_t row_norms(const MatrixView<T>& x, const double* center, double* norms,
                      cudaStream_t stream);

// ---- The fused route: kernel_contract.cu, kernel_matrix.cu ------------------
//
// out (n x q, float64, zero-initialised by the caller) += K(x, y) @ weights.
// xnorms / ynorms: row_norms of x and y with the same center.
template <typename T>
cudaError_t kernel_contract(const ContractParams<T>& p, const double* xnorms,
                            const double* ynorms, cudaStream_t stream);

// out (n x m, T) = K(x, y).
template <typename T>
cudaError_t kernel_matrix(const MatrixParams<T>& p, const double* xnorms, const double* ynorms,
                          cudaStream_t stream);

// ---- The GEMM route: a Gram tile from cuBLAS, then one fused kernel ---------
// (kernel_matrix_gemm.cu, kernel_contract_gemm.cu, radius_stats.cu)
//
// G (rows x cols, row-major, leading dimension ld_gram) holds the inner
// products of the centred rows [row0, row0 + rows) of x with the centred rows
// [col0, col0 + cols) of y, computed by cuBLAS through torch on the caller's
// stream (fp32, tf32 or bf16 inputs with fp32 accumulation, or fp64).  xnorms
// and ynorms are the float64 squared norms of the same centred (and rounded)
// rows, indexed globally.  T is the type of G.
template <typename T>
struct GramTile {
  const T* gram = nullptr;
  int64_t ld_gram = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row0 = 0;                 // global index of the tile's first x row
  int64_t col0 = 0;                 // global index of the tile's first y row
  const double* xnorms = nullptr;
  const double* ynorms = nullptr;
  // The original rows (contiguous, d values each, global indexing), read for
  // the pairs whose distance is recomputed exactly (tile::exact_d2).
  const T* x = nullptr;
  const T* y = nullptr;
  int64_t d = 0;
};

// The kernel epilogues' tile.  x / y are read only for near-duplicate pairs
// under root kernels (uses_root_distance: laplacian, energy); null skips that
// (reduced precision).
template <typename T>
struct GramTileParams : GramTile<T> {
  KernelParams kernel;
  bool same = false;                // x is y: the global diagonal is d = 0 exactly
  bool exclude_diagonal = false;    // the global diagonal counts as 0 (requires same)
};

// out (rows x cols, leading dimension ld_out) = k(G); out may alias G when
// OutT is T (kernel_matrix_gemm.cu).
template <typename T, typename OutT>
cudaError_t gram_kernel_values(const GramTileParams<T>& p, OutT* out, int64_t ld_out,
                               cudaStream_t stream);

// The most weight columns gram_contract takes (more go through a second GEMM).
constexpr int64_t kGramContractMaxColumns = 8;

// out[(row0 + i) * q + c] += sum_j k(G_ij) * weights[(col0 + j) * q + c], in
// float64, for q <= kGramContractMaxColumns; weights and out are global arrays
// (m x q and n x q, row-major).  One warp owns a row, so tiles launched one
// after another on a stream accumulate without atomics (kernel_contract_gemm.cu).
template <typename T>
cudaError_t gram_contract(const GramTileParams<T>& p, const T* weights, int64_t q, double* out,
                          cudaStream_t stream);

// ---- radius_stats.cu: the GEMM route's k-NN ball statistics (precision /
// recall / density / coverage, realism score) ---------------------------------
//
// For the Gram tile G of the centred queries [row0, row0 + rows) and the
// centred references [col0, col0 + cols) (float32 from an IEEE GEMM, or
// float64), with xnorms / ynorms their float64 squared norms:
//   count[row0 + i]     += #{j : ||q_i - r_j|| < radii[col0 + j]}
//   max_ratio[row0 + i]  = max(max_ratio[row0 + i], max_j radii2[j] / ||q_i - r_j||^2)
// (the ratio is +inf at distance 0, whatever the radius: a copy of a kept
// reference; references with radii2 < 0 are ignored).  The squared distance is
// xnorms + ynorms - 2 G in float64, clamped at 0; the pairs where that identity
// loses digits (below 1/32 of xnorms + ynorms) or could fall on the wrong side
// of the ball's boundary (|d2 - radii2| <= band * (xnorms + ynorms)) are
// recomputed exactly in float64 from the original rows x and y (global
// indexing, d values each) and compared as distances, so a point exactly on a
// boundary is outside it.  One warp owns a row: tiles launched one after
// another on a stream accumulate without atomics.
template <typename T>
struct GramRadiusParams : GramTile<T> {
  const double* radii = nullptr;    // per reference (global), any sign
  const double* radii2 = nullptr;   // radii^2, or -1 where radii < 0
  double band = 0.0;
  int64_t* count = nullptr;         // per query (global)
  double* max_ratio = nullptr;      // per query (global), >= 0
};

template <typename T>
cudaError_t gram_radius(const GramRadiusParams<T>& p, cudaStream_t stream);

// ---- knn.cu -----------------------------------------------------------------
// out[i * c + k] = ||x_(row0 + i) - y_(cand[i * c + k])||, exactly in float64
// (the same arithmetic as gram_radius's recomputed pairs, so that a k-NN
// radius and a ball test of the same two points agree to the bit), for
// i < rows, k < c; x (n x d) and y (m x d) contiguous with global indexing,
// cand (rows x c) indices into y (a negative index gives +inf).  The k-NN
// candidates' re-ranking distances.
template <typename T>
cudaError_t candidate_distances(const T* x, int64_t row0, int64_t rows, const T* y, int64_t m,
                                int64_t d, const int64_t* cand, int64_t c, double* out,
                                cudaStream_t stream);

// ---- kernel_contract_tc.cu: the fused tensor-core route (precision "tf32" /
// "bf16", few features) -------------------------------------------------------
//
// out (n x q, float64) += K(x, y) @ weights with the Gram tile from WMMA in
// shared memory.  x and y are the centred rows already rounded to the
// precision: float32 values exact in tf32, or bf16 (bf16 == true); xnorms /
// ynorms their float64 squared norms.  With upper set (same,
// n == m) tiles below the diagonal are skipped and those above it accumulate
// in upper (w' K w = w' out + 2 w' upper).  Compute capability 8.0 or newer:
// cudaErrorNotSupported otherwise.
struct TcContractParams {
  const void* x = nullptr;
  const void* y = nullptr;
  int64_t n = 0;
  int64_t m = 0;
  int64_t d = 0;
  bool bf16 = false;
  const double* xnorms = nullptr;
  const double* ynorms = nullptr;
  const float* weights = nullptr;   // m x q, row-major
  int64_t q = 1;
  double* out = nullptr;
  double* upper = nullptr;
  KernelParams kernel;
  bool same = false;
  bool exclude_diagonal = false;
};

cudaError_t contract_tc(const TcContractParams& p, cudaStream_t stream);

// ---- sliced_wasserstein.cu: sorting (CUB) and the exact 1-D distances -------

// Bytes of CUB temporary storage sort_rows needs for `rows` rows of length len
// (into *out); cudaErrorInvalidValue for negative sizes or, below the long-row
// threshold, more than 2^31 - 1 values in one call.  Queries the current device.
template <typename T>
cudaError_t sort_rows_temp_bytes(int64_t len, int64_t rows, size_t* out);

// Sort each of the `rows` contiguous rows of length len of `in` ascending into
// `out` (same layout): one device-wide radix sort per row when rows are long,
// one segmented radix sort over all rows otherwise.  Keys only.
template <typename T>
cudaError_t sort_rows(const T* in, T* out, int64_t len, int64_t rows, void* temp,
                      size_t temp_bytes, cudaStream_t stream);

// out[l] += W_p^p(u_l, v_l) for l < rows: u (rows x n) and v (rows x m) are
// sorted rows; cu (rows x n) and cv (rows x m) are their cumulative weights in
// the sorted order (the last entry of each row is taken as 1), or null for
// uniform weights.  Each pair of quantile-function steps is visited once by
// the thread of the longer side's element.
template <typename T>
cudaError_t wasserstein_1d(const T* u, int64_t n, const double* cu, const T* v, int64_t m,
                           const double* cv, int64_t rows, double p, double* out,
                           cudaStream_t stream);

}  // namespace cuda
}  // namespace simgap
