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

// LSD radix sort of floating-point values (8-bit digits), through unsigned
// keys that order like the values: flip all bits of negatives, the sign bit
// of the others.  Passes whose digit is the same for every key are skipped.
template <typename T>
struct RadixKey;
template <>
struct RadixKey<float> {
  using U = uint32_t;
};
template <>
struct RadixKey<double> {
  using U = uint64_t;
};

template <typename T>
void radix_sort(T* data, int64_t n, typename RadixKey<T>::U* a, typename RadixKey<T>::U* b) {
  using U = typename RadixKey<T>::U;
  constexpr int kBytes = int(sizeof(U));
  constexpr U kSign = U(1) << (8 * kBytes - 1);
  if (n < 512) {
    std::sort(data, data + n);
    return;
  }
  std::vector<int64_t> counts(size_t(kBytes) * 256, 0);
  for (int64_t i = 0; i < n; ++i) {
    const U u = bit_cast<U>(data[i]);
    const U k = (u & kSign) ? ~u : (u | kSign);
    a[i] = k;
    for (int byte = 0; byte < kBytes; ++byte) ++counts[size_t(byte * 256 + ((k >> (8 * byte)) & 0xff))];
  }
  U* src = a;
  U* dst = b;
  for (int byte = 0; byte < kBytes; ++byte) {
    int64_t* c = counts.data() + byte * 256;
    const U first = (src[0] >> (8 * byte)) & 0xff;
    if (c[first] == n) continue;  // every key has this digit
    int64_t offset = 0;
    for (int v = 0; v < 256; ++v) {
      const int64_t cnt = c[v];
      c[v] = offset;
      offset += cnt;
    }
    for (int64_t i = 0; i < n; ++i) {
      const U k = src[i];
      dst[c[(k >> (8 * byte)) & 0xff]++] = k;
    }
    std::swap(src, dst);
  }
  for (int64_t i = 0; i < n; ++i) {
    const U k = src[i];
    data[i] = bit_cast<T>((k & kSign) ? (k & ~kSign) : ~k);
  }
}

}  // namespace

template <typename T>
void sliced_wasserstein(const SlicedParams<T>& p) {
  using U = typename RadixKey<T>::U;
  const TileOps<T>& ops = tile_ops<T>();
  const int64_t n = p.x.rows, m = p.y.rows, d = p.x.cols, L = p.n_projections;
  if (L == 0) return;
  const int threads = threads_for(double(n + m) * double(L) * double(d + 20));
  const bool weighted = p.a != nullptr || p.b != nullptr;
  // Directions per chunk: at most one tile, and a projection buffer near 64 MB.
  const int64_t budget = int64_t(64) << 20;
  int64_t lc = std::max<int64_t>(1, budget / (int64_t(sizeof(T)) * (n + m)));
  lc = std::min<int64_t>({lc, L, kTile});

  // The directions of a chunk, as rows (lc x d), packed once as tile "y" panels.
  std::vector<T> theta(size_t(lc) * size_t(d));
  std::vector<T> theta_panels(size_t(ceil_div(lc, ops.nr) * ops.nr) * size_t(d));
  std::vector<T> theta_norms(size_t(ceil_div(lc, ops.nr) * ops.nr));
  std::vector<T> px(size_t(lc) * size_t(n)), py(size_t(lc) * size_t(m));
  KernelParams linear;
  linear.type = KernelType::Linear;
  // Per thread: x panels + norms + one tile for the projections.
  Scratch<T> tiles(threads, kTile * d + kTile + kTile * kTile);
  Scratch<U> keys(weighted ? 0 : threads, 2 * std::max(n, m));
  Scratch<Weighted<T>> pairs(weighted ? threads : 0, n + m);

  auto project = [&](const MatrixView<T>& v, T* proj, int64_t ld, int64_t nl) {
    const int64_t rows = v.rows;
    const int64_t nb = ceil_div(rows, kTile);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t bl = 0; bl < nb; ++bl) {
      T* xb = tiles.slot(SIMGAP_THREAD_ID());
      T* xn = xb + kTile * d;
      T* K = xn + kTile;
      const int64_t r0 = bl * kTile, nr = std::min(kTile, rows - r0);
      ops.pack(v, p.center, r0, nr, ops.mr, xb, xn);
      ops.kernel_tile(linear, xb, xn, nr, theta_panels.data(), theta_norms.data(), nl, d, K,
                      kTile, false);
      for (int64_t i = 0; i < nr; ++i)
        for (int64_t l = 0; l < nl; ++l) proj[l * ld + r0 + i] = K[i * kTile + l];
    }
  };

  for (int64_t l0 = 0; l0 < L; l0 += lc) {
    const int64_t nl = std::min(lc, L - l0);
    for (int64_t l = 0; l < nl; ++l)
      for (int64_t k = 0; k < d; ++k) theta[size_t(l * d + k)] = T(p.projections[k * L + l0 + l]);
    MatrixView<T> tv;
    tv.ptr = theta.data();
    tv.rows = nl;
    tv.cols = d;
    tv.row_stride = d;
    tv.col_stride = 1;
    ops.pack(tv, nullptr, 0, nl, ops.nr, theta_panels.data(), theta_norms.data());
    project(p.x, px.data(), n, nl);
    project(p.y, py.data(), m, nl);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t l = 0; l < nl; ++l) {
      T* u = px.data() + l * n;
      T* v = py.data() + l * m;
      if (!weighted) {
        U* kb = keys.slot(SIMGAP_THREAD_ID());
        const int64_t half = std::max(n, m);
        radix_sort(u, n, kb, kb + half);
        radix_sort(v, m, kb, kb + half);
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
