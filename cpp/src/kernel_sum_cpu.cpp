// kernel_sum: s = sum_ij a_i K(x_i, y_j) b_j, the building block of every MMD
// estimate.  When x is y and a is b the kernel is symmetric and only the tiles
// on and above the diagonal are evaluated (off-diagonal tiles count twice).
// With several gaussian bandwidths, the per-bandwidth sums can be returned
// from the same Gram tiles (one distance computation for the whole sweep).
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
  const int ns = p.kernel.n_scales;
  if (p.per_scale)
    for (int s = 0; s < ns; ++s) p.per_scale[s] = 0.0;
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
  const int64_t width = p.per_scale ? 1 + ns : 1;
  std::vector<double> partial(size_t(nchunks * width), 0.0);
  Scratch<T> scratch(threads, TileWork<T>::size(d));

#pragma omp parallel num_threads(threads)
  {
    TileWork<T> w(scratch.slot(SIMGAP_THREAD_ID()), d);
    int64_t packed_ib = -1;
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t first = c * chunk, last = std::min(npairs, first + chunk);
      int64_t ib = int64_t(std::upper_bound(row_start.begin(), row_start.end(), first) -
                           row_start.begin()) - 1;
      double* part = partial.data() + c * width;
      for (int64_t k = first; k < last; ++k) {
        while (k >= row_start[size_t(ib) + 1]) ++ib;
        const int64_t jb = (sym ? ib : 0) + (k - row_start[size_t(ib)]);
        const int64_t i0 = ib * bs, ni = std::min(bs, n - i0);
        const int64_t j0 = jb * bs, nj = std::min(bs, m - j0);
        const double weight = (sym && jb != ib) ? 2.0 : 1.0;
        part[0] += tile_sum(ops, p, center, i0, ni, j0, nj, ib != packed_ib, w, weight,
                            p.per_scale ? part + 1 : nullptr);
        packed_ib = ib;
      }
    }
  }
  double total = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) {
    total += partial[size_t(c * width)];
    for (int s = 0; s + 1 < width; ++s) p.per_scale[s] += partial[size_t(c * width + 1 + s)];
  }
  return total;
}

template double kernel_sum<float>(const SumParams<float>&);
template double kernel_sum<double>(const SumParams<double>&);

}  // namespace cpu
}  // namespace simgap
