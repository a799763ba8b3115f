// Helpers shared by the operation drivers (generic code only).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "simgap/kernel_math.h"
#include "simgap/ops.h"
#include "tile_ops.h"

#if defined(_OPENMP)
#include <omp.h>
#define SIMGAP_THREAD_ID() omp_get_thread_num()
#else
#define SIMGAP_THREAD_ID() 0
#endif

namespace simgap {
namespace cpu {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The exact squared distance of row i of x and row j of y in float64: the
// differences of the input values, accumulated with an explicit fma in
// feature order.  The CUDA kernels' tile::exact_d2 is the same arithmetic, so
// both devices get the same bits for the same pair, in either order
// ((a - b)^2 == (b - a)^2 exactly): a k-NN radius and a ball test of the same
// two points agree exactly, and a point that is some sample's k-th neighbour
// lies exactly on that sample's ball.
template <typename T>
double exact_d2(const MatrixView<T>& x, int64_t i, const MatrixView<T>& y, int64_t j) {
  const T* a = x.row(i);
  const T* b = y.row(j);
  const int64_t d = x.cols, cx = x.col_stride, cy = y.col_stride;
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) {
    const double t = double(a[k * cx]) - double(b[k * cy]);
    s = std::fma(t, t, s);
  }
  return s;
}

// Half-width, relative to ||x - c||^2 + ||y - c||^2, of the band around a
// ball's squared radius in which a Gram-identity squared distance in T may
// fall on the wrong side of the boundary (the identity's error is below
// about 2 d u (||x - c||^2 + ||y - c||^2), u the unit roundoff of T, plus the
// rounding of the centred values): twice that, and at least 1e-4 (float32)
// or 1e-10 (float64).  The same rule is _cuda_ops.radius_band.
template <typename T>
double radius_band(int64_t d) {
  const double u = sizeof(T) == 4 ? 0x1p-24 : 0x1p-53;
  return std::max(sizeof(T) == 4 ? 1e-4 : 1e-10, 4.0 * double(d + 2) * u);
}

// Threads for a call of about `work` multiply-adds: one below a few million,
// where waking a team (possibly on a busy machine) costs more than it saves.
inline int threads_for(double work) {
  return work < 4.0e6 ? 1 : max_threads();
}

// Rows of x per block: kTile, or fewer so that every thread gets a few blocks.
inline int64_t choose_row_block(int64_t n, int threads, int mr) {
  const int64_t want = ceil_div(n, int64_t(4) * threads);
  const int64_t b = ceil_div(want, mr) * mr;
  return std::max<int64_t>(mr, std::min<int64_t>(kTile, b));
}

// The centre vector to subtract, only for kernels that are translation invariant.
template <typename T>
const double* center_for(const PairParams<T>& p) {
  return uses_distance(p.kernel.type) ? p.center : nullptr;
}

// On the tiles where x and y are the same points, make the diagonal exact:
// k(x_i, x_i) = k(0), or 0 when the diagonal is excluded.
template <typename T>
void fix_diagonal(const KernelParams& kp, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K,
                  int64_t ldk, bool exclude) {
  const int64_t lo = std::max(i0, j0), hi = std::min(i0 + ni, j0 + nj);
  if (lo >= hi) return;
  T k0 = T(0);
  if (!exclude && uses_distance(kp.type))
    k0 = visit_kernel(
        kp.type, [&](auto kt) { return kernel_at_zero<decltype(kt)::value, T>(kp); },
        [] { return T(0); });
  for (int64_t g = lo; g < hi; ++g) {
    T& v = K[(g - i0) * ldk + (g - j0)];
    if (exclude || uses_distance(kp.type)) v = k0;
  }
}

// For the kernels that take ||x - y|| itself (uses_root_distance: laplacian,
// energy), a squared distance from the Gram expansion carries an absolute
// error of about eps * (||x||^2 + ||y||^2), which the root turns into a large
// relative error for near-duplicate points.  Pairs whose d2 is below tau * (||x||^2 + ||y||^2)
// are recomputed directly from the input rows in float64 (as scikit-learn's
// euclidean_distances does for float32).  Rare outside near-duplicates.
template <typename T>
void refine_small_distances(const PairParams<T>& p, int64_t i0, int64_t ni, int64_t j0,
                            int64_t nj, const T* xn, const T* yn, T* K, int64_t ldk) {
  const T tau = sizeof(T) == 4 ? T(1.0 / 32.0) : T(1e-6);
  for (int64_t i = 0; i < ni; ++i) {
    T* row = K + i * ldk;
    for (int64_t j = 0; j < nj; ++j) {
      if (!(row[j] < tau * (xn[i] + yn[j]))) continue;
      row[j] = T(exact_d2(p.x, i0 + i, p.y, j0 + j));
    }
  }
}

// The kernel tile for rows [i0, i0+ni) of x and [j0, j0+nj) of y, whose panels
// are packed in xb/yb: K[i * ldk + j] = k(x_i, y_j), refined where needed.
template <typename T>
void compute_tile(const TileOps<T>& ops, const PairParams<T>& p, int64_t i0, int64_t ni,
                  int64_t j0, int64_t nj, const T* xb, const T* xn, const T* yb, const T* yn,
                  T* K, int64_t ldk, bool raw = false) {
  if (!uses_root_distance(p.kernel.type)) {
    ops.kernel_tile(p.kernel, xb, xn, ni, yb, yn, nj, p.x.cols, K, ldk, raw);
    return;
  }
  ops.kernel_tile(p.kernel, xb, xn, ni, yb, yn, nj, p.x.cols, K, ldk, true);
  refine_small_distances(p, i0, ni, j0, nj, xn, yn, K, ldk);
  if (!raw) ops.apply_tile(p.kernel, K, ldk, ni, nj);
}

// One thread's scratch: a contiguous slice of a buffer allocated before the
// parallel region (so an allocation failure raises in the caller's thread).
template <typename T>
struct Scratch {
  std::vector<T> mem;
  int64_t per = 0;
  Scratch(int threads, int64_t per_thread) : mem(size_t(threads) * size_t(per_thread)), per(per_thread) {}
  T* slot(int t) { return mem.data() + int64_t(t) * per; }
};

}  // namespace cpu
}  // namespace simgap

namespace simgap {
namespace cpu {

// Row-owned traversal of the n x m pair grid, for the operations whose result
// is kept per row of x (contraction, matrix, k-NN, ball counts).  Threads take
// blocks of x rows; a block holds up to 8 tiles of kTile rows, packed once, and
// each y tile is packed once per block and used by all of the block's tiles, so
// packing costs little next to the Gram products.  For every x tile and every
// y tile, in increasing y order, op.tile(t, i0, ni, j0, nj, K) receives the
// kernel tile K (ni x nj, row stride kTile), or the raw squared distances /
// inner products when raw.  Before the parallel region op.setup(rows_per_block,
// threads) is called; op.begin(t, r0, rows) and op.end(t, r0, rows) bracket
// each block on thread t.  Results do not depend on the number of threads.
template <typename T, typename Op>
void row_blocks(const TileOps<T>& ops, const PairParams<T>& p, bool raw, Op& op) {
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols;
  if (n == 0) return;
  const int threads = threads_for(double(n) * double(m) * double(d + 1));
  const double* center = center_for(p);
  const int64_t tiles = ceil_div(n, kTile);
  const int64_t panel_bytes = kTile * (d + 1) * int64_t(sizeof(T));
  int64_t S = tiles / (int64_t(4) * threads);
  S = std::max<int64_t>(1, std::min<int64_t>({S, 8, std::max<int64_t>(1, (int64_t(8) << 20) / panel_bytes)}));
  const int64_t rows = S > 1 ? S * kTile : choose_row_block(n, threads, ops.mr);
  const int64_t nblocks = ceil_div(n, rows);
  const int64_t xpanel = std::max(rows, kTile);
  op.setup(rows, threads);
  Scratch<T> scratch(threads, xpanel * d + xpanel + kTile * d + kTile + kTile * kTile);

#pragma omp parallel num_threads(threads)
  {
    const int t = SIMGAP_THREAD_ID();
    T* xs = scratch.slot(t);
    T* xsn = xs + xpanel * d;
    T* yb = xsn + xpanel;
    T* yn = yb + kTile * d;
    T* K = yn + kTile;
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t r0 = blk * rows, rn = std::min(rows, n - r0);
      const int64_t sub = ceil_div(rn, kTile);
      op.begin(t, r0, rn);
      for (int64_t s = 0; s < sub; ++s) {
        const int64_t i0 = r0 + s * kTile, ni = std::min(kTile, r0 + rn - i0);
        ops.pack(p.x, center, i0, ni, ops.mr, xs + s * kTile * d, xsn + s * kTile);
      }
      for (int64_t j0 = 0; j0 < m; j0 += kTile) {
        const int64_t nj = std::min(kTile, m - j0);
        ops.pack(p.y, center, j0, nj, ops.nr, yb, yn);
        for (int64_t s = 0; s < sub; ++s) {
          const int64_t i0 = r0 + s * kTile, ni = std::min(kTile, r0 + rn - i0);
          compute_tile(ops, p, i0, ni, j0, nj, xs + s * kTile * d, xsn + s * kTile, yb, yn, K,
                       kTile, raw);
          op.tile(t, i0, ni, j0, nj, K);
        }
      }
      op.end(t, r0, rn);
    }
  }
}

// PairParams for the operations that need only the raw squared distances
// (k-NN, ball counts): a distance kernel type makes compute_tile refine the
// near-duplicate pairs.
template <typename T>
PairParams<T> distance_pair(const MatrixView<T>& x, const MatrixView<T>& y, const double* center,
                            bool same) {
  PairParams<T> pp;
  pp.x = x;
  pp.y = y;
  pp.center = center;
  pp.kernel.type = KernelType::Energy;
  pp.same = same;
  return pp;
}

// One thread's buffers for evaluating tiles of up to kTile x kTile pairs.
template <typename T>
struct TileWork {
  T* xb;  // x panels (kTile x d)
  T* xn;  // x norms (kTile)
  T* yb;  // y panels
  T* yn;  // y norms
  T* K;   // kernel tile (kTile x kTile)
  T* K2;  // second tile, for per-bandwidth sums (kTile x kTile)
  T* bb;  // y weights of the tile (kTile)
  static int64_t size(int64_t d) { return 2 * (kTile * d + kTile) + 2 * kTile * kTile + kTile; }
  explicit TileWork(T* mem, int64_t d)
      : xb(mem), xn(xb + kTile * d), yb(xn + kTile), yn(yb + kTile * d), K(yn + kTile),
        K2(K + kTile * kTile), bb(K2 + kTile * kTile) {}
};

// sum_ij a_i k(x_i, y_j) b_j over one tile (rows [i0, i0+ni) of x, [j0, j0+nj)
// of y) whose panels are already packed.  With per_scale, the sum for each
// bandwidth alone is added to per_scale[s] (from the same Gram tile).
template <typename T>
double packed_tile_sum(const TileOps<T>& ops, const SumParams<T>& p, int64_t i0, int64_t ni,
                       int64_t j0, int64_t nj, const T* xb, const T* xn, const T* yb,
                       const T* yn, T* K, T* K2, T* bb, double weight, double* per_scale) {
  for (int64_t j = 0; j < nj; ++j) bb[j] = p.b ? T(p.b[j0 + j]) : T(1);
  const double* a = p.a ? p.a + i0 : nullptr;
  if (per_scale == nullptr) {
    compute_tile(ops, p, i0, ni, j0, nj, xb, xn, yb, yn, K, kTile);
    if (p.same) fix_diagonal(p.kernel, i0, ni, j0, nj, K, kTile, p.exclude_diagonal);
    return weight * ops.sum_tile(K, kTile, ni, nj, a, bb);
  }
  compute_tile(ops, p, i0, ni, j0, nj, xb, xn, yb, yn, K, kTile, true);
  double total = 0.0;
  KernelParams one = p.kernel;
  one.n_scales = 1;
  for (int s = 0; s < p.kernel.n_scales; ++s) {
    one.scale[0] = p.kernel.scale[s];
    for (int64_t i = 0; i < ni; ++i) std::copy(K + i * kTile, K + i * kTile + nj, K2 + i * kTile);
    ops.apply_tile(one, K2, kTile, ni, nj);
    if (p.same) fix_diagonal(one, i0, ni, j0, nj, K2, kTile, p.exclude_diagonal);
    const double v = weight * ops.sum_tile(K2, kTile, ni, nj, a, bb);
    per_scale[s] += v;
    total += v;
  }
  return total;
}

// The same, packing the tile's panels first (x only when pack_x).
template <typename T>
double tile_sum(const TileOps<T>& ops, const SumParams<T>& p, const double* center, int64_t i0,
                int64_t ni, int64_t j0, int64_t nj, bool pack_x, TileWork<T>& w,
                double weight, double* per_scale) {
  if (pack_x) ops.pack(p.x, center, i0, ni, ops.mr, w.xb, w.xn);
  ops.pack(p.y, center, j0, nj, ops.nr, w.yb, w.yn);
  return packed_tile_sum(ops, p, i0, ni, j0, nj, w.xb, w.xn, w.yb, w.yn, w.K, w.K2, w.bb,
                         weight, per_scale);
}

}  // namespace cpu
}  // namespace simgap
