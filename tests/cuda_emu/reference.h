// The float64 references and the check counters shared by the emulator drivers.
#pragma once
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "simgap/common.h"
#include "simgap/kernel_args.h"
#include "simgap/kernel_math.h"

inline int failures = 0, checks = 0;

inline double kv(const simgap::KernelParams& kp, double d2, double g) {
  return simgap::visit_kernel(
      kp.type,
      [&](auto kt) { return simgap::kernel_value<decltype(kt)::value, double>(d2, g, kp); },
      [] { return std::nan(""); });
}

// K(x, y) in float64 from the given values; with same, the diagonal is k(0)
// for distance kernels (0 with excl), as the kernels define it.
template <typename T>
std::vector<double> ref_K(const std::vector<T>& x, int64_t n, const std::vector<T>& y, int64_t m, int64_t d,
                          const simgap::KernelParams& kp, bool same, bool excl) {
  std::vector<double> K(n * m);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double d2 = 0, g = 0;
      for (int64_t k = 0; k < d; ++k) {
        const double a = double(x[i * d + k]), b = double(y[j * d + k]);
        d2 += (a - b) * (a - b);
        g += a * b;
      }
      double v = kv(kp, d2, g);
      if (same && i == j) {
        if (excl) v = 0;
        else if (simgap::uses_distance(kp.type)) v = kv(kp, 0, g);
      }
      K[i * m + j] = v;
    }
  return K;
}

inline void check(const std::string& what, double got, double ref, double scale, double tol) {
  ++checks;
  if (!(std::fabs(got - ref) <= tol * (std::fabs(ref) + scale))) {
    if (failures < 40) std::printf("FAIL %s got=%.10g ref=%.10g\n", what.c_str(), got, ref);
    ++failures;
  }
}
