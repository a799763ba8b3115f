// kernel_sum: s = sum_ij a_i K(x_i, y_j) b_j, the building block of every MMD
// estimate.  When x is y and a is b the kernel is symmetric and only the tiles
// on and above the diagonal are evaluated (off-diagonal tiles count twice).
//
// Determinism: the tile pairs are cut into fixed chunks whose float64 partial
// sums are added in order at the end, so the result does not depend on the
// number of threads or on scheduling.
#include "driver_common.h"

namespace simgap {
namespace cpu {

template <typename T>
double kernel_sum(const SumParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols;
  if (n == 0 || m == 0) return 0.0;
  const bool sym = p.symmetric && p.same;
  const int threads = max_threads();
  const int64_t bs = kTile;
  const int64_t nbi = ceil_div(n, bs), nbj = ceil_div(m, bs);
  const double* center = center_for(p);

  // Pairs (ib, jb) in row-major order, jb >= ib when symmetric.
  std::vector<int64_t> row_start(size_t(nbi) + 1, 0);
  for (int64_t ib = 0; ib < nbi; ++ib)
    row_start[size_t(ib) + 1] = row_start[size_t(ib)] + (sym ? nbj - ib : nbj);
  const int64_t npairs = row_start[size_t(nbi)];
  const int64_t chunk = 16;
  const int64_t nchunks = ceil_div(npairs, chunk);
  std::vector<double> partial(size_t(nchunks), 0.0);

  const int64_t per = 2 * (bs * d + bs) + bs * bs + bs;
  Scratch<T> scratch(threads, per);

#pragma omp parallel num_threads(threads)
  {
    T* xb = scratch.slot(SIMGAP_THREAD_ID());
    T* xn = xb + bs * d;
    T* yb = xn + bs;
    T* yn = yb + bs * d;
    T* K = yn + bs;
    T* bb = K + bs * bs;
    int64_t packed_ib = -1;
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t first = c * chunk, last = std::min(npairs, first + chunk);
      int64_t ib = int64_t(std::upper_bound(row_start.begin(), row_start.end(), first) -
                           row_start.begin()) - 1;
      double acc = 0.0;
      for (int64_t k = first; k < last; ++k) {
        while (k >= row_start[size_t(ib) + 1]) ++ib;
        const int64_t jb = (sym ? ib : 0) + (k - row_start[size_t(ib)]);
        const int64_t i0 = ib * bs, ni = std::min(bs, n - i0);
        const int64_t j0 = jb * bs, nj = std::min(bs, m - j0);
        if (ib != packed_ib) {
          ops.pack(p.x, center, i0, ni, ops.mr, xb, xn);
          packed_ib = ib;
        }
        ops.pack(p.y, center, j0, nj, ops.nr, yb, yn);
        ops.kernel_tile(p.kernel, xb, xn, ni, yb, yn, nj, d, K, bs);
        if (p.same) fix_diagonal(p.kernel, i0, ni, j0, nj, K, bs, p.exclude_diagonal);
        for (int64_t j = 0; j < nj; ++j) bb[j] = p.b ? T(p.b[j0 + j]) : T(1);
        const double s = ops.sum_tile(K, bs, ni, nj, p.a ? p.a + i0 : nullptr, bb);
        acc += (sym && jb != ib) ? 2.0 * s : s;
      }
      partial[size_t(c)] = acc;
    }
  }
  double total = 0.0;
  for (double v : partial) total += v;
  return total;
}

template double kernel_sum<float>(const SumParams<float>&);
template double kernel_sum<double>(const SumParams<double>&);

}  // namespace cpu
}  // namespace simgap
