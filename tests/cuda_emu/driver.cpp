// A CPU check of the SIMT CUDA kernels (row_norms.cu, kernel_contract.cu,
// kernel_matrix.cu, kernel_contract_gemm.cu, kernel_matrix_gemm.cu,
// kernel_rowwise.cu, radius_stats.cu, knn.cu) without a GPU:
// tests/test_cuda_emulated.py compiles them unmodified, apart from each
// <<<...>>> launch rewritten to emu::launch (emu.h: one std::thread per CUDA
// thread, real barriers, warp shuffles, atomics under a mutex), and this
// driver compares every operation with a float64 reference, on ragged sizes,
// in plain, symmetric (upper) and exclude-diagonal modes; the elementwise
// kernel values of kernel_rowwise; and the k-NN ball statistics (gram_radius)
// and exact candidate distances against the same fma arithmetic.  Grid caps
// are EMU_CAP, the second argument (default 65535; 2 forces the grid-stride
// loops).
#include "emu.h"
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <cstdio>
#include <random>
#include <string>
#include "simgap/cuda_ops.h"
#include "simgap/kernel_args.h"
#include "simgap/kernel_math.h"
#include "reference.h"
using namespace simgap;

template <typename T> MatrixView<T> view(const std::vector<T>& a, int64_t r, int64_t c) {
  MatrixView<T> v; v.ptr = a.data(); v.rows = r; v.cols = c; v.row_stride = c; v.col_stride = 1; return v;
}
KernelParams kernel(int t) {
  std::vector<double> sc = {1.0 / (2 * 1.7 * 1.7)};
  if (t == 0) sc = {1.0 / (2*0.5*0.5), 1.0 / (2*1.7*1.7), 1.0/(2*4.0*4.0)};
  if (t == 1) sc = {1.0 / 1.7};
  if (t == 2) sc = {1.0 / (1.7*1.7)};
  return make_kernel(t, sc, 0.3, 1.0, 3);
}

template <typename T>
void run_case(int kt, int64_t n, int64_t m, int64_t d, int64_t q, bool same, bool excl, std::mt19937& rng) {
  std::normal_distribution<double> N(0, 1);
  if (same) m = n;
  std::vector<T> x(n*d), y0(m*d), w(m*q);
  for (auto& v : x) v = T(N(rng)); for (auto& v : y0) v = T(N(rng) + 0.3); for (auto& v : w) v = T(N(rng));
  const std::vector<T>& y = same ? x : y0;
  KernelParams kp = kernel(kt);
  std::vector<double> center(d, 0.0);
  for (int64_t i = 0; i < n; ++i) for (int64_t k = 0; k < d; ++k) center[k] += double(x[i*d+k]) / n;
  const double* c = uses_distance(kp.type) ? center.data() : nullptr;
  auto K = ref_K(x, n, y, m, d, kp, same, excl);
  double scale = 0; for (double v : K) scale = std::max(scale, std::fabs(v));
  const double tol = sizeof(T) == 4 ? 3e-4 : 1e-9;
  char tag[200];
  std::snprintf(tag, sizeof tag, "%s k=%d n=%ld m=%ld d=%ld q=%ld same=%d excl=%d", sizeof(T)==4?"f32":"f64", kt, (long)n, (long)m, (long)d, (long)q, same, excl);
  std::vector<double> xn(n, -7), yn(m, -7);
  // --- fused contract, also upper mode
  for (int upper_mode = 0; upper_mode < (same ? 2 : 1); ++upper_mode) {
    ContractParams<T> p;
    p.x = view(x, n, d); p.y = view(y, m, d); p.center = c; p.kernel = kp; p.same = same;
    if (cuda::row_norms<T>(p.x, c, xn.data(), nullptr) || cuda::row_norms<T>(p.y, c, yn.data(), nullptr)) { std::printf("row_norms err\n"); ++failures; }
    std::vector<double> out(n*q, 0.0), up(n*q, 0.0);
    p.weights = w.data(); p.q = q; p.out = out.data(); p.exclude_diagonal = excl; p.upper = upper_mode ? up.data() : nullptr;
    if (cuda::kernel_contract<T>(p, xn.data(), yn.data(), nullptr)) { std::printf("contract err %s\n", tag); ++failures; }
    if (!upper_mode) {
      for (int64_t i = 0; i < n; ++i) for (int64_t cc = 0; cc < q; ++cc) {
        double r = 0, s = 0; for (int64_t j = 0; j < m; ++j) { r += K[i*m+j]*double(w[j*q+cc]); s += std::fabs(K[i*m+j]*double(w[j*q+cc])); }
        std::string t = std::string("contract ") + tag; check(t.c_str(), out[i*q+cc], r, s, tol);
      }
    } else {
      for (int64_t cc = 0; cc < q; ++cc) {
        double got = 0, r = 0, s = 0;
        for (int64_t i = 0; i < n; ++i) got += double(w[i*q+cc]) * (out[i*q+cc] + 2 * up[i*q+cc]);
        for (int64_t i = 0; i < n; ++i) for (int64_t j = 0; j < m; ++j) { double t = double(w[i*q+cc])*K[i*m+j]*double(w[j*q+cc]); r += t; s += std::fabs(t); }
        std::string t = std::string("upper ") + tag; check(t.c_str(), got, r, s, tol);
      }
    }
  }
  // --- fused matrix (no exclude)
  if (!excl) {
    MatrixParams<T> p; p.x = view(x, n, d); p.y = view(y, m, d); p.center = c; p.kernel = kp; p.same = same;
    std::vector<T> out(n*m, T(-99)); p.out = out.data();
    if (cuda::kernel_matrix<T>(p, xn.data(), yn.data(), nullptr)) { std::printf("matrix err\n"); ++failures; }
    for (int64_t i = 0; i < n*m; ++i) { std::string t = std::string("matrix ") + tag; check(t.c_str(), double(out[i]), K[i], scale, tol); }
  }
  // --- GEMM route: centred values, tiles of TR x TC with ld_gram = cols + 3
  {
    std::vector<T> xc(n*d), yc(m*d);
    for (int64_t i = 0; i < n; ++i) for (int64_t k = 0; k < d; ++k) xc[i*d+k] = T(double(x[i*d+k]) - (c ? c[k] : 0.0));
    for (int64_t i = 0; i < m; ++i) for (int64_t k = 0; k < d; ++k) yc[i*d+k] = T(double(y[i*d+k]) - (c ? c[k] : 0.0));
    std::vector<double> gxn(n), gyn(m);
    cuda::row_norms<T>(view(xc, n, d), nullptr, gxn.data(), nullptr);
    cuda::row_norms<T>(view(yc, m, d), nullptr, gyn.data(), nullptr);
    const int64_t TR = 37, TC = 29;
    std::vector<double> out(n*q, 0.0), Kg(n*m, -99);
    for (int64_t i0 = 0; i0 < n; i0 += TR) for (int64_t j0 = 0; j0 < m; j0 += TC) {
      const int64_t rows = std::min(TR, n - i0), cols = std::min(TC, m - j0), ld = cols + 3;
      std::vector<T> G(rows * ld, T(1e30));
      for (int64_t i = 0; i < rows; ++i) for (int64_t j = 0; j < cols; ++j) {
        T s = 0; for (int64_t k = 0; k < d; ++k) s += xc[(i0+i)*d+k] * yc[(j0+j)*d+k]; G[i*ld+j] = s; }
      cuda::GramTileParams<T> p; p.gram = G.data(); p.ld_gram = ld; p.rows = rows; p.cols = cols; p.row0 = i0; p.col0 = j0;
      p.xnorms = gxn.data(); p.ynorms = gyn.data(); p.x = x.data(); p.y = y.data(); p.d = d; p.kernel = kp; p.same = same; p.exclude_diagonal = excl;
      if (q <= 8 && cuda::gram_contract<T>(p, w.data(), q, out.data(), nullptr)) { std::printf("gram_contract err\n"); ++failures; }
      std::vector<double> kt(rows * (cols + 5), -5);
      if (cuda::gram_kernel_values<T, double>(p, kt.data(), cols + 5, nullptr)) { std::printf("gkv err\n"); ++failures; }
      for (int64_t i = 0; i < rows; ++i) for (int64_t j = 0; j < cols; ++j) Kg[(i0+i)*m + j0+j] = kt[i*(cols+5)+j];
    }
    for (int64_t i = 0; i < n*m; ++i) { std::string t = std::string("gram_values ") + tag; check(t.c_str(), Kg[i], K[i], scale, tol); }
    if (q <= 8) for (int64_t i = 0; i < n; ++i) for (int64_t cc = 0; cc < q; ++cc) {
      double r = 0, s = 0; for (int64_t j = 0; j < m; ++j) { r += K[i*m+j]*double(w[j*q+cc]); s += std::fabs(K[i*m+j]*double(w[j*q+cc])); }
      std::string t = std::string("gram_contract ") + tag; check(t.c_str(), out[i*q+cc], r, s, tol);
    }
  }
}

// kernel_values (kernel_rowwise.cu): k from squared distances (some negative:
// clamped at 0) and inner products, elementwise, against the float64 math.
template <typename T>
void run_rowwise_case(int kt, int64_t n, std::mt19937& rng) {
  std::normal_distribution<double> N(0, 1);
  std::vector<T> d2(n), g(n), out(n, T(-99));
  for (int64_t i = 0; i < n; ++i) {
    d2[i] = T(i % 13 == 0 ? -1e-3 * std::fabs(N(rng)) : 4.0 * N(rng) * N(rng));
    g[i] = T(2.0 * N(rng));
  }
  const KernelParams kp = kernel(kt);
  if (cuda::kernel_values<T>(kp, d2.data(), g.data(), out.data(), n, nullptr)) { std::printf("kernel_values err\n"); ++failures; }
  char tag[80];
  std::snprintf(tag, sizeof tag, "kernel_values %s k=%d n=%ld", sizeof(T) == 4 ? "f32" : "f64", kt, (long)n);
  for (int64_t i = 0; i < n; ++i) {
    const double ref = kv(kp, std::max(double(d2[i]), 0.0), double(g[i]));
    check(tag, double(out[i]), ref, 1.0, sizeof(T) == 4 ? 1e-5 : 1e-14);
  }
}

// The exact squared distance the kernels use (tile::exact_d2): fma in feature order.
template <typename T> double exact_ref(const T* a, const T* b, int64_t d) {
  double s = 0.0;
  for (int64_t k = 0; k < d; ++k) { const double t = double(a[k]) - double(b[k]); s = std::fma(t, t, s); }
  return s;
}

// gram_radius over GEMM-route tiles and candidate_distances, against float64
// references.  Radii are exact distances to other points (so some queries lie
// exactly on a boundary: outside), plus ignored (negative) and zero radii and
// exact duplicates (distance 0: an infinite ratio).
template <typename T>
void run_radius_case(int64_t n, int64_t m, int64_t d, std::mt19937& rng) {
  std::normal_distribution<double> N(0, 1);
  std::uniform_int_distribution<int64_t> pick_x(0, n - 1), pick_y(0, m - 1);
  std::vector<T> x(n * d), y(m * d);
  for (auto& v : x) v = T(N(rng) * 3.0 + 5.0);
  for (auto& v : y) v = T(N(rng) * 3.0 + 5.0);
  for (int64_t i = 0; i < n; i += 3) {  // a third of the queries are copies of references
    const int64_t j = pick_y(rng);
    for (int64_t k = 0; k < d; ++k) x[i * d + k] = y[j * d + k];
  }
  std::vector<double> radii(m), radii2(m);
  for (int64_t j = 0; j < m; ++j) {
    const int64_t kind = j % 5;
    if (kind == 3) radii[j] = -1.0;                    // ignored
    else if (kind == 4) radii[j] = 0.0;                // an empty ball
    else radii[j] = std::sqrt(exact_ref(x.data() + pick_x(rng) * d, y.data() + j * d, d));  // a query on it
    radii2[j] = radii[j] >= 0 ? radii[j] * radii[j] : -1.0;
  }
  std::vector<double> center(d, 0.0);
  for (int64_t i = 0; i < n; ++i) for (int64_t k = 0; k < d; ++k) center[k] += double(x[i*d+k]) / double(n + m);
  for (int64_t i = 0; i < m; ++i) for (int64_t k = 0; k < d; ++k) center[k] += double(y[i*d+k]) / double(n + m);
  std::vector<T> xc(n*d), yc(m*d);
  for (int64_t i = 0; i < n*d; ++i) xc[i] = T(double(x[i]) - center[i % d]);
  for (int64_t i = 0; i < m*d; ++i) yc[i] = T(double(y[i]) - center[i % d]);
  std::vector<double> gxn(n), gyn(m);
  cuda::row_norms<T>(view(xc, n, d), nullptr, gxn.data(), nullptr);
  cuda::row_norms<T>(view(yc, m, d), nullptr, gyn.data(), nullptr);
  const double u = sizeof(T) == 4 ? 0x1p-24 : 0x1p-53;
  const double band = std::max(sizeof(T) == 4 ? 1e-4 : 1e-10, 4.0 * double(d + 2) * u);
  std::vector<int64_t> count(n, 0);
  std::vector<double> ratio(n, 0.0);
  const int64_t TR = 37, TC = 29;
  for (int64_t i0 = 0; i0 < n; i0 += TR) for (int64_t j0 = 0; j0 < m; j0 += TC) {
    const int64_t rows = std::min(TR, n - i0), cols = std::min(TC, m - j0), ld = cols + 3;
    std::vector<T> G(rows * ld, T(1e30));
    for (int64_t i = 0; i < rows; ++i) for (int64_t j = 0; j < cols; ++j) {
      T s = 0; for (int64_t k = 0; k < d; ++k) s += xc[(i0+i)*d+k] * yc[(j0+j)*d+k]; G[i*ld+j] = s; }
    cuda::GramRadiusParams<T> p;
    p.gram = G.data(); p.ld_gram = ld; p.rows = rows; p.cols = cols; p.row0 = i0; p.col0 = j0;
    p.xnorms = gxn.data(); p.ynorms = gyn.data(); p.x = x.data(); p.y = y.data(); p.d = d;
    p.radii = radii.data(); p.radii2 = radii2.data(); p.band = band; p.count = count.data(); p.max_ratio = ratio.data();
    if (cuda::gram_radius<T>(p, nullptr)) { std::printf("gram_radius err\n"); ++failures; }
  }
  char tag[120];
  std::snprintf(tag, sizeof tag, "%s n=%ld m=%ld d=%ld", sizeof(T) == 4 ? "f32" : "f64", (long)n, (long)m, (long)d);
  const double inf = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    int64_t c = 0; double best = 0.0;
    for (int64_t j = 0; j < m; ++j) {
      if (radii2[j] < 0) continue;
      const double e = exact_ref(x.data() + i * d, y.data() + j * d, d);
      c += std::sqrt(e) < radii[j];
      const double r = e > 0 ? radii2[j] / e : inf;
      best = std::max(best, r);
    }
    ++checks;
    if (count[i] != c) { if (failures < 40) std::printf("FAIL radius count %s i=%ld got=%ld ref=%ld\n", tag, (long)i, (long)count[i], (long)c); ++failures; }
    if (std::isinf(best) || std::isinf(ratio[i])) {
      ++checks;
      if (std::isinf(best) != std::isinf(ratio[i])) { std::printf("FAIL radius inf %s i=%ld\n", tag, (long)i); ++failures; }
    } else {
      check(std::string("radius ratio ") + tag, ratio[i], best, 0.0, sizeof(T) == 4 ? 1e-4 : 1e-10);
    }
  }
  // candidate_distances: rows [row0, row0 + rows) of x, c candidates each, some -1 / out of range.
  const int64_t row0 = n / 3, rows = n - row0, cc = 5;
  std::vector<int64_t> cand(rows * cc);
  for (int64_t t = 0; t < rows * cc; ++t) cand[t] = t % 7 == 6 ? -1 : (t % 11 == 10 ? m : pick_y(rng));
  std::vector<double> out(rows * cc, -3.0);
  if (cuda::candidate_distances<T>(x.data(), row0, rows, y.data(), m, d, cand.data(), cc, out.data(), nullptr)) {
    std::printf("candidate_distances err\n"); ++failures;
  }
  for (int64_t t = 0; t < rows * cc; ++t) {
    const int64_t j = cand[t];
    const double ref = (j < 0 || j >= m) ? inf : std::sqrt(exact_ref(x.data() + (row0 + t / cc) * d, y.data() + j * d, d));
    ++checks;
    if (!(out[t] == ref)) { if (failures < 40) std::printf("FAIL candidates %s t=%ld got=%.17g ref=%.17g\n", tag, (long)t, out[t], ref); ++failures; }
  }
}

int main(int argc, char** argv) {
  // argv[1]: "quick" (what CI runs: ragged edges, 1 x 1, an odd number of
  // 64-row tiles for the folded symmetric grid; half the combinations, every
  // kernel), "stride" (one size, two kernels: for a cap of 2) or "full";
  // argv[2]: the grid cap EMU_CAP (default 65535).
  const std::string mode_arg = argc > 1 ? argv[1] : "full";
  if (argc > 2) emu_cap = std::atol(argv[2]);
  const bool quick = mode_arg == "quick", stride = mode_arg == "stride";
  std::mt19937 rng(1);
  std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1}, {2, 7, 3}, {7, 2, 17}, {130, 97, 33}};
  if (stride) sizes = {{130, 97, 33}};
  if (!quick && !stride) sizes.insert(sizes.end(), {{65, 129, 16}, {70, 70, 5}, {200, 200, 3}, {257, 257, 2}});
  const int gaussian = int(KernelType::Gaussian), energy = int(KernelType::Energy);
  for (int kt = 0; kt < kNumKernels; ++kt)
    for (auto& s : sizes)
      for (int64_t q : {1, 3})
        for (int mode = 0; mode < 3; ++mode) {
          if (quick && (kt + mode + int(q)) % 2) continue;
          if (stride && ((kt != gaussian && kt != energy) || q != 3)) continue;
          bool same = mode > 0, excl = mode == 2;
          run_case<float>(kt, s[0], s[1], s[2], q, same, excl, rng);
          run_case<double>(kt, s[0], s[1], s[2], q, same, excl, rng);
        }
  for (int kt = 0; kt < kNumKernels; ++kt) {
    run_rowwise_case<float>(kt, stride ? 1100 : 300, rng);
    run_rowwise_case<double>(kt, stride ? 1100 : 300, rng);
  }
  for (auto& s : sizes) {
    run_radius_case<float>(s[0], s[1], s[2], rng);
    run_radius_case<double>(s[0], s[1], s[2], rng);
  }
  std::printf("checks=%d failures=%d\n", checks, failures);
  return failures != 0;
}
