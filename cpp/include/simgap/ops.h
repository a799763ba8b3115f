// Parameter structs and declarations of the CPU operations.  The CUDA
// launchers in cuda/include/simgap/ take the same structs.
#pragma once

#include <cstdint>

#include "simgap/common.h"

namespace simgap {

// What every pairwise operation between the rows of x (n x d) and the rows of
// y (m x d) needs.
template <typename T>
struct PairParams {
  MatrixView<T> x;                 // n x d
  MatrixView<T> y;                 // m x d
  const double* center = nullptr;  // length d, subtracted from x and y rows (distance kernels); may be null
  KernelParams kernel;
  bool same = false;               // x and y are the same points: d(x_i, y_i) = 0 exactly
};

// out (n x q, row-major, float64) += K(x, y) @ weights (m x q, row-major, T).
template <typename T>
struct ContractParams : PairParams<T> {
  const T* weights = nullptr;
  int64_t q = 1;
  double* out = nullptr;
  bool exclude_diagonal = false;   // treat k(x_i, y_i) as 0 (requires same)
  // CUDA only, for symmetric sums w' K(x, x) w: when set (same), tiles below
  // the diagonal are skipped and those above it accumulate here instead of
  // in out, so that w' K w = w' out + 2 w' upper.
  double* upper = nullptr;
};

// Returns sum_ij a_i K(x_i, y_j) b_j in float64.
template <typename T>
struct SumParams : PairParams<T> {
  const double* a = nullptr;       // length n, null means all ones
  const double* b = nullptr;       // length m, null means all ones
  bool exclude_diagonal = false;   // skip i == j (requires same)
  bool symmetric = false;          // same && a == b: evaluate only the upper block triangle
  double* per_scale = nullptr;     // if set (gaussian), per_scale[s] = the sum for bandwidth s alone
};

// out[i] = k(x_i, y_i) for paired rows (x and y have the same number of rows).
template <typename T>
struct RowwiseParams {
  MatrixView<T> x;
  MatrixView<T> y;
  KernelParams kernel;
  double* out = nullptr;
};

// out[b] = unbiased MMD^2 between rows [b*B, (b+1)*B) of x and of y, for
// b < n_blocks (the block, or incomplete U-statistic, estimator).  Use the
// views' index to visit the rows in a random order.
template <typename T>
struct BlockParams {
  MatrixView<T> x;
  MatrixView<T> y;
  const double* center = nullptr;
  KernelParams kernel;
  int64_t block = 2;
  int64_t n_blocks = 0;
  double* out = nullptr;
};

// out (n x m, row-major, T) = K(x, y).
template <typename T>
struct MatrixParams : PairParams<T> {
  T* out = nullptr;
};

// out[l] = W_p^p(theta_l^T x, theta_l^T y) for each of the L directions.
template <typename T>
struct SlicedParams {
  MatrixView<T> x;                      // n x d
  MatrixView<T> y;                      // m x d
  const double* center = nullptr;      // length d, subtracted before projecting; may be null
  const double* projections = nullptr;  // d x L, row-major (column l is theta_l)
  int64_t n_projections = 0;
  const double* a = nullptr;            // x weights (length n, sum 1), null = uniform
  const double* b = nullptr;            // y weights (length m, sum 1), null = uniform
  double p = 2.0;
  double* out = nullptr;                // length L
};

// The k nearest rows of y for every row of x, by Euclidean distance:
// dist (n x k, ascending, float64: exact distances of the inputs, exact_d2)
// and index (n x k).  With exclude_self (x is
// y), row i is not its own neighbour.  Ties keep the lower index.  Missing
// neighbours (fewer than k candidates) are +inf / -1.
template <typename T>
struct KnnParams {
  MatrixView<T> x;
  MatrixView<T> y;
  const double* center = nullptr;
  int64_t k = 1;
  bool same = false;
  bool exclude_self = false;
  double* dist = nullptr;
  int64_t* index = nullptr;
};

// For every query row q of x and the reference rows r_j of y with radii
// radii[j] (radii2[j] = radii[j]^2, or -1 for an ignored reference):
// count[q] = #{j : ||q - r_j|| < radii[j]} and max_ratio[q] = max_j
// radii2[j] / ||q - r_j||^2 (as squares; +inf at distance 0).  Distances come
// from the Gram tiles; within radius_band of a boundary the exact distance
// (exact_d2) is compared with radii[j], so a point exactly on a ball's
// boundary (e.g. the sample that defines a k-NN radius) is outside it.
template <typename T>
struct RadiusParams {
  MatrixView<T> x;
  MatrixView<T> y;
  const double* center = nullptr;
  const double* radii = nullptr;
  const double* radii2 = nullptr;
  int64_t* count = nullptr;
  double* max_ratio = nullptr;
};

namespace cpu {
template <typename T> void knn(const KnnParams<T>& p);
template <typename T> void radius_stats(const RadiusParams<T>& p);
template <typename T> void kernel_contract(const ContractParams<T>& p);
template <typename T> double kernel_sum(const SumParams<T>& p);
template <typename T> void kernel_matrix(const MatrixParams<T>& p);
template <typename T> void sliced_wasserstein(const SlicedParams<T>& p);
template <typename T> void kernel_rowwise(const RowwiseParams<T>& p);
template <typename T> void mmd_blocks(const BlockParams<T>& p);

// The instruction set the tile loops were dispatched to ("avx512", "avx2", "generic").
const char* isa_name();
// Threads an operation will use (OpenMP's current setting; 1 without OpenMP).
int max_threads();
}  // namespace cpu

}  // namespace simgap
