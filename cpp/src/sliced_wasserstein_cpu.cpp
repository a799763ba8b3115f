// sliced_wasserstein: W_p^p between the projections of x and y on each of L
// directions.  Directions are processed in chunks: the projections of a chunk
// (chunk x (n + m) values) are the only large buffer, then each direction's two
// samples are sorted and the exact 1-D distance is read off the quantile
// functions by merging the two cumulative-weight grids.
#include <cmath>
#include <cstring>

#include "driver_common.h"

namespace simgap {
namespace cpu {

namespace {

inline double pow_p(double diff, double p) {
  const double a = std::fabs(diff);
  if (p == 2.0) return a * a;
  if (p == 1.0) return a;
  return std::pow(a, p);
}

// Exact W_p^p between uniform empirical distributions of sorted u (n) and v (m).
template <typename T>
double w1d_uniform(const T* u, int64_t n, const T* v, int64_t m, double p) {
  double cost = 0.0;
  if (n == m) {
    for (int64_t i = 0; i < n; ++i) cost += pow_p(double(u[i]) - double(v[i]), p);
    return cost / double(n);
  }
  double prev = 0.0;
  int64_t i = 0, j = 0;
  while (i < n && j < m) {
    // Equal rationals divide to equal doubles, so ties advance both sides.
    const double ca = double(i + 1) / double(n), cb = double(j + 1) / double(m);
    const double next = ca < cb ? ca : cb;
    cost += (next - prev) * pow_p(double(u[i]) - double(v[j]), p);
    prev = next;
    if (ca <= next) ++i;
    if (cb <= next) ++j;
  }
  return cost;
}

template <typename T>
struct Weighted {
  T v;
  double w;
  bool operator<(const Weighted& o) const { return v < o.v; }
};

// Exact W_p^p between weighted empirical distributions (weights sum to 1).
template <typename T>
double w1d_weighted(Weighted<T>* u, int64_t n, Weighted<T>* v, int64_t m, double p) {
  std::sort(u, u + n);
  std::sort(v, v + m);
  double cost = 0.0, prev = 0.0, ca = u[0].w, cb = v[0].w;
  int64_t i = 0, j = 0;
  while (i < n && j < m) {
    const double cai = i == n - 1 ? 1.0 : ca;  // the last step closes the grid exactly
    const double cbj = j == m - 1 ? 1.0 : cb;
    const double next = cai < cbj ? cai : cbj;
    if (next > prev) cost += (next - prev) * pow_p(double(u[i].v) - double(v[j].v), p);
    prev = next > prev ? next : prev;
    const bool adv_i = cai <= next, adv_j = cbj <= next;
    if (adv_i && ++i < n) ca += u[i].w;
    if (adv_j && ++j < m) cb += v[j].w;
  }
  return cost;
}

// proj[l * ld + i] = <row_i - center, theta_l> for l < L, all rows of v.
template <typename T>
void project_all(const TileOps<T>& ops, const MatrixView<T>& v, const double* center,
                 const T* theta, int64_t L, T* proj, int64_t ld, Scratch<T>& rows_scratch,
                 int64_t block, int threads) {
  const int64_t n = v.rows, d = v.cols;
  const int64_t nb = ceil_div(n, block);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t b = 0; b < nb; ++b) {
    T* rows = rows_scratch.slot(SIMGAP_THREAD_ID());
    const int64_t r0 = b * block, nr = std::min(block, n - r0);
    for (int64_t r = 0; r < nr; ++r) {
      const T* src = v.ptr + (r0 + r) * v.row_stride;
      T* dst = rows + r * d;
      for (int64_t k = 0; k < d; ++k)
        dst[k] = center ? T(double(src[k * v.col_stride]) - center[k]) : src[k * v.col_stride];
    }
    ops.project(rows, nr, d, theta, L, proj + r0, ld);
  }
}

}  // namespace

template <typename T>
void sliced_wasserstein(const SlicedParams<T>& p) {
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols, L = p.n_projections;
  if (L == 0) return;
  const int threads = max_threads();
  const bool weighted = p.a != nullptr || p.b != nullptr;
  // Directions per chunk: bounded so the projection buffer stays near 64 MB.
  const int64_t budget = int64_t(64) << 20;
  int64_t lc = std::max<int64_t>(1, budget / (int64_t(sizeof(T)) * (n + m)));
  lc = std::min<int64_t>({lc, L, 64});

  std::vector<T> theta(size_t(lc) * size_t(d));
  std::vector<T> px(size_t(lc) * size_t(n)), py(size_t(lc) * size_t(m));
  const int64_t block = 64;
  Scratch<T> rows_scratch(threads, block * d);
  Scratch<Weighted<T>> pairs(weighted ? threads : 0, n + m);

  for (int64_t l0 = 0; l0 < L; l0 += lc) {
    const int64_t nl = std::min(lc, L - l0);
    for (int64_t l = 0; l < nl; ++l)
      for (int64_t k = 0; k < d; ++k) theta[size_t(l * d + k)] = T(p.projections[k * L + l0 + l]);
    project_all(ops, p.x, p.center, theta.data(), nl, px.data(), n, rows_scratch, block, threads);
    project_all(ops, p.y, p.center, theta.data(), nl, py.data(), m, rows_scratch, block, threads);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t l = 0; l < nl; ++l) {
      T* u = px.data() + l * n;
      T* v = py.data() + l * m;
      if (!weighted) {
        std::sort(u, u + n);
        std::sort(v, v + m);
        p.out[l0 + l] = w1d_uniform(u, n, v, m, p.p);
      } else {
        Weighted<T>* wu = pairs.slot(SIMGAP_THREAD_ID());
        Weighted<T>* wv = wu + n;
        for (int64_t i = 0; i < n; ++i) wu[i] = {u[i], p.a ? p.a[i] : 1.0 / double(n)};
        for (int64_t j = 0; j < m; ++j) wv[j] = {v[j], p.b ? p.b[j] : 1.0 / double(m)};
        p.out[l0 + l] = w1d_weighted(wu, n, wv, m, p.p);
      }
    }
  }
}

template void sliced_wasserstein<float>(const SlicedParams<float>&);
template void sliced_wasserstein<double>(const SlicedParams<double>&);

}  // namespace cpu
}  // namespace simgap
