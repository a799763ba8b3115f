// radius_stats: for every query row, how many reference balls contain it
// (strictly) and the largest ratio radius / distance, tile by tile.  These are
// the sums behind precision, recall, density, coverage (Naeem et al. 2020) and
// the realism score (Kynkaanniemi et al. 2019).
#include <cmath>
#include <limits>

#include "driver_common.h"

namespace simgap {
namespace cpu {

template <typename T>
void radius_stats(const RadiusParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols;
  if (n == 0) return;
  const int threads = max_threads();
  const int64_t bi = choose_row_block(n, threads, ops.mr);
  const int64_t bj = kTile;
  const int64_t nbi = ceil_div(n, bi), nbj = ceil_div(m, bj);
  PairParams<T> pp;
  pp.x = p.x;
  pp.y = p.y;
  pp.center = p.center;
  pp.kernel.type = KernelType::Energy;
  const int64_t per = bi * d + bi + bj * d + bj + bi * bj;
  Scratch<T> scratch(threads, per);
  const double inf = std::numeric_limits<double>::infinity();

#pragma omp parallel num_threads(threads)
  {
    T* xb = scratch.slot(SIMGAP_THREAD_ID());
    T* xn = xb + bi * d;
    T* yb = xn + bi;
    T* yn = yb + bj * d;
    T* K = yn + bj;
#pragma omp for schedule(dynamic, 1)
    for (int64_t ib = 0; ib < nbi; ++ib) {
      const int64_t i0 = ib * bi, ni = std::min(bi, n - i0);
      for (int64_t i = 0; i < ni; ++i) {
        p.count[i0 + i] = 0;
        p.max_ratio[i0 + i] = 0.0;
      }
      ops.pack(p.x, p.center, i0, ni, ops.mr, xb, xn);
      for (int64_t jb = 0; jb < nbj; ++jb) {
        const int64_t j0 = jb * bj, nj = std::min(bj, m - j0);
        ops.pack(p.y, p.center, j0, nj, ops.nr, yb, yn);
        compute_tile(ops, pp, i0, ni, j0, nj, xb, xn, yb, yn, K, bj, /*raw=*/true);
        const double* r2 = p.radii2 + j0;
        for (int64_t i = 0; i < ni; ++i) {
          const T* row = K + i * bj;
          int64_t cnt = 0;
          double best = p.max_ratio[i0 + i];
          for (int64_t j = 0; j < nj; ++j) {
            const double v = double(row[j]);
            if (r2[j] < 0) continue;
            cnt += v < r2[j];
            const double ratio = v > 0 ? r2[j] / v : (r2[j] > 0 ? inf : 0.0);
            best = ratio > best ? ratio : best;
          }
          p.count[i0 + i] += cnt;
          p.max_ratio[i0 + i] = best;
        }
      }
    }
  }
}

template void radius_stats<float>(const RadiusParams<float>&);
template void radius_stats<double>(const RadiusParams<double>&);

}  // namespace cpu
}  // namespace simgap
