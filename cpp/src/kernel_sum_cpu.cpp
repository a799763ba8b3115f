// kernel_sum: s = sum_ij a_i K(x_i, y_j) b_j, the building block of every MMD
// estimate.  When x is y and a is b the kernel is symmetric and only the tiles
// on and above the diagonal are evaluated (off-diagonal tiles count twice).
// With several gaussian bandwidths, the per-bandwidth sums can be returned
// from the same Gram tiles (one distance computation for the whole sweep).
//
// Determinism: the tile pairs are cut into fixed chunks whose float64 partial
// sums are added in order at the end, so the result does not depend on the
// number of threads or on scheduling.
#include <cmath>

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
  const int threads = threads_for(double(n) * double(m) * double(d + 1));
  const int64_t nbi = ceil_div(n, kTile), nbj = ceil_div(m, kTile);
  const double* center = center_for(p);

  // Work units are super-tiles of S x S tiles: the S x tiles and S y tiles of a
  // unit are packed once and used S times each, which makes packing cheap next
  // to the Gram products.  S is chosen so that there are enough units for the
  // threads and the packed panels stay within a few MB.
  const int64_t panel_bytes = kTile * (d + 1) * int64_t(sizeof(T));
  int64_t S = int64_t(double(std::min(nbi, nbj)) / std::sqrt(16.0 * threads));
  S = std::max<int64_t>(1, std::min<int64_t>({S, 8, std::max<int64_t>(1, (int64_t(8) << 20) / panel_bytes)}));
  const int64_t nsi = ceil_div(nbi, S), nsj = ceil_div(nbj, S);
  std::vector<int64_t> row_start(size_t(nsi) + 1, 0);
  for (int64_t I = 0; I < nsi; ++I)
    row_start[size_t(I) + 1] = row_start[size_t(I)] + (sym ? nsj - I : nsj);
  const int64_t nunits = row_start[size_t(nsi)];
  const int64_t width = p.per_scale ? 1 + ns : 1;
  std::vector<double> partial(size_t(nunits * width), 0.0);

  const int64_t panels = S * kTile * d + S * kTile;
  const int64_t per = 2 * panels + 2 * kTile * kTile + kTile;
  Scratch<T> scratch(threads, per);

#pragma omp parallel num_threads(threads)
  {
    T* xs = scratch.slot(SIMGAP_THREAD_ID());
    T* xsn = xs + S * kTile * d;
    T* ys = xsn + S * kTile;
    T* ysn = ys + S * kTile * d;
    T* K = ysn + S * kTile;
    T* K2 = K + kTile * kTile;
    T* bb = K2 + kTile * kTile;
    int64_t packed_I = -1;
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < nunits; ++u) {
      const int64_t I = int64_t(std::upper_bound(row_start.begin(), row_start.end(), u) -
                                row_start.begin()) - 1;
      const int64_t J = (sym ? I : 0) + (u - row_start[size_t(I)]);
      const int64_t ib0 = I * S, ib1 = std::min(nbi, ib0 + S);
      const int64_t jb0 = J * S, jb1 = std::min(nbj, jb0 + S);
      if (I != packed_I) {
        for (int64_t ib = ib0; ib < ib1; ++ib) {
          const int64_t i0 = ib * kTile, ni = std::min(kTile, n - i0);
          ops.pack(p.x, center, i0, ni, ops.mr, xs + (ib - ib0) * kTile * d, xsn + (ib - ib0) * kTile);
        }
        packed_I = I;
      }
      for (int64_t jb = jb0; jb < jb1; ++jb) {
        const int64_t j0 = jb * kTile, nj = std::min(kTile, m - j0);
        ops.pack(p.y, center, j0, nj, ops.nr, ys + (jb - jb0) * kTile * d, ysn + (jb - jb0) * kTile);
      }
      double* part = partial.data() + u * width;
      for (int64_t ib = ib0; ib < ib1; ++ib) {
        const int64_t i0 = ib * kTile, ni = std::min(kTile, n - i0);
        for (int64_t jb = (sym && I == J) ? ib : jb0; jb < jb1; ++jb) {
          const int64_t j0 = jb * kTile, nj = std::min(kTile, m - j0);
          const double weight = (sym && jb != ib) ? 2.0 : 1.0;
          part[0] += packed_tile_sum(ops, p, i0, ni, j0, nj, xs + (ib - ib0) * kTile * d,
                                     xsn + (ib - ib0) * kTile, ys + (jb - jb0) * kTile * d,
                                     ysn + (jb - jb0) * kTile, K, K2, bb, weight,
                                     p.per_scale ? part + 1 : nullptr);
        }
      }
    }
  }
  double total = 0.0;
  for (int64_t u = 0; u < nunits; ++u) {
    total += partial[size_t(u * width)];
    for (int s = 0; s + 1 < width; ++s) p.per_scale[s] += partial[size_t(u * width + 1 + s)];
  }
  return total;
}

template double kernel_sum<float>(const SumParams<float>&);
template double kernel_sum<double>(const SumParams<double>&);

}  // namespace cpu
}  // namespace simgap
