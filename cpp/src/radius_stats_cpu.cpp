// radius_stats: for every query row, how many reference balls contain it
// (strictly) and the largest ratio radius / distance, tile by tile.  These are
// the sums behind precision, recall, density, coverage (Naeem et al. 2020) and
// the realism score (Kynkaanniemi et al. 2019).
#include <cmath>
#include <limits>
#include <vector>

#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

template <typename T>
struct RadiusOp {
  const RadiusParams<T>& p;
  std::vector<double> xn, yn;  // band * the float64 squared norms of the centred rows
  static void norms(const MatrixView<T>& a, const double* c, std::vector<double>& out) {
    out.resize(size_t(a.rows));
    for (int64_t i = 0; i < a.rows; ++i) {
      const T* r = a.row(i);
      double s = 0.0;
      for (int64_t k = 0; k < a.cols; ++k) {
        const double t = double(r[k * a.col_stride]) - (c ? c[k] : 0.0);
        s += t * t;
      }
      out[size_t(i)] = s;
    }
  }
  void setup(int64_t, int) {
    const double band = radius_band<T>(p.x.cols);
    norms(p.x, p.center, xn);
    norms(p.y, p.center, yn);
    for (double& v : xn) v *= band;
    for (double& v : yn) v *= band;
  }
  void begin(int, int64_t r0, int64_t rn) {
    for (int64_t i = r0; i < r0 + rn; ++i) {
      p.count[i] = 0;
      p.max_ratio[i] = 0.0;
    }
  }
  void end(int, int64_t, int64_t) {}
  void tile(int, int64_t i0, int64_t ni, int64_t j0, int64_t nj, T* K) {
    const double inf = std::numeric_limits<double>::infinity();
    const double* r2 = p.radii2 + j0;
    const double* bn = yn.data() + j0;
    for (int64_t i = 0; i < ni; ++i) {
      const T* row = K + i * kTile;
      const double bq = xn[size_t(i0 + i)];
      int64_t cnt = 0;
      double best = p.max_ratio[i0 + i];
      for (int64_t j = 0; j < nj; ++j) {
        if (r2[j] < 0) continue;
        double v = double(row[j]);
        bool inside = v < r2[j];
        // Near the boundary, the exact distance decides (strictly inside).
        if (std::fabs(v - r2[j]) <= bq + bn[j]) {
          v = exact_d2(p.x, i0 + i, p.y, j0 + j);
          inside = std::sqrt(v) < p.radii[j0 + j];
        }
        cnt += inside;
        const double ratio = v > 0 ? r2[j] / v : inf;  // a copy of a kept real sample, radius 0 too
        best = ratio > best ? ratio : best;
      }
      p.count[i0 + i] += cnt;
      p.max_ratio[i0 + i] = best;
    }
  }
};

}  // namespace

template <typename T>
void radius_stats(const RadiusParams<T>& p) {
  RadiusOp<T> op{p};
  row_blocks(tile_ops<T>(), distance_pair(p.x, p.y, p.center, false), /*raw=*/true, op);
}

template void radius_stats<float>(const RadiusParams<float>&);
template void radius_stats<double>(const RadiusParams<double>&);

}  // namespace cpu
}  // namespace simgap
