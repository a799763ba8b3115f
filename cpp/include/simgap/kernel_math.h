// The per-pair kernel math, written once and included by the CPU loops and
// the CUDA kernels alike.  Every function is branch-free in the element so
// that the CPU loops vectorise.
#pragma once

#include <cstdint>

#include "simgap/common.h"

namespace simgap {

template <typename To, typename From>
SIMGAP_HOST_DEVICE To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast size mismatch");
  To out;
#if defined(__CUDA_ARCH__)
  memcpy(&out, &v, sizeof(To));
#else
  __builtin_memcpy(&out, &v, sizeof(To));
#endif
  return out;
}

// exp(x) for float, relative error below 2 ulp on [-87, 88]; 0 below -87.
// Range reduction x = n ln2 + r with the Cephes split of ln2 and a degree-6
// polynomial on |r| <= ln2/2; 2^n is built in the exponent bits.  Rounding
// uses the 1.5 * 2^23 trick so the loop vectorises on every instruction set.
SIMGAP_HOST_DEVICE float exp_approx(float x) {
  const float lo = -87.0f, hi = 88.0f;
  const bool under = x < lo;
  x = x < lo ? lo : (x > hi ? hi : x);
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float t = x * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (bit_cast<int32_t>(t) + 127) << 23;
  const float v = p * bit_cast<float>(bits);
  return under ? 0.0f : v;
}

// exp(x) for double, about 1 ulp on [-708, 709]; 0 below -708.
// Same reduction with the Cephes two-part ln2 and a degree-13 Taylor
// polynomial (remainder < 2e-17 on |r| <= ln2/2).
SIMGAP_HOST_DEVICE double exp_approx(double x) {
  const double lo = -708.0, hi = 709.0;
  const bool under = x < lo;
  x = x < lo ? lo : (x > hi ? hi : x);
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = x * 1.4426950408889634074 + magic;
  const double n = t - magic;
  double r = x - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  const int64_t bits = (bit_cast<int64_t>(t) + 1023) << 52;
  const double v = p * bit_cast<double>(bits);
  return under ? 0.0 : v;
}

SIMGAP_HOST_DEVICE float sqrt_(float x) {
#if defined(__CUDA_ARCH__)
  return sqrtf(x);
#else
  return __builtin_sqrtf(x);
#endif
}
SIMGAP_HOST_DEVICE double sqrt_(double x) {
#if defined(__CUDA_ARCH__)
  return sqrt(x);
#else
  return __builtin_sqrt(x);
#endif
}

template <typename T>
SIMGAP_HOST_DEVICE T int_pow(T base, int degree) {
  T out = base;
  for (int i = 1; i < degree; ++i) out *= base;
  return out;
}

// Kernel value from the squared distance d2 (distance kernels) or the inner
// product g (polynomial, linear).  T is the compute type of the tile.  One
// branch per kernel of the table (SIMGAP_KERNELS, simgap/common.h).
template <KernelType KT, typename T>
SIMGAP_HOST_DEVICE T kernel_value(T d2, T g, const KernelParams& kp) {
  if constexpr (KT == KernelType::Gaussian) {
    T v = T(0);
    for (int s = 0; s < kp.n_scales; ++s) v += exp_approx(-d2 * T(kp.scale[s]));
    return v;
  } else if constexpr (KT == KernelType::Laplacian) {
    return exp_approx(-sqrt_(d2) * T(kp.scale[0]));
  } else if constexpr (KT == KernelType::IMQ) {
    return T(1) / sqrt_(T(1) + d2 * T(kp.scale[0]));
  } else if constexpr (KT == KernelType::Polynomial) {
    return int_pow(T(kp.gamma) * g + T(kp.coef0), kp.degree);
  } else if constexpr (KT == KernelType::Linear) {
    return g;
  } else {
    static_assert(KT == KernelType::Energy, "kernel_value: a kernel of the table has no formula");
    return -sqrt_(d2);
  }
}

// k(x, x) for a distance kernel (d2 = 0); used on the exact diagonal.
template <KernelType KT, typename T>
SIMGAP_HOST_DEVICE T kernel_at_zero(const KernelParams& kp) {
  return kernel_value<KT, T>(T(0), T(0), kp);
}

}  // namespace simgap
