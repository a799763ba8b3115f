// Shared definitions for the CPU and CUDA backends: no CUDA syntax beyond the
// SIMGAP_HOST_DEVICE qualifier, so this header compiles with the host compiler.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SIMGAP_HOST_DEVICE __host__ __device__ __forceinline__
#else
// always_inline: these helpers are compiled into the per-instruction-set
// translation units too, and must never leave an out-of-line copy there that
// the linker could pick for the generic build.
#define SIMGAP_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace simgap {

// The kernels k(x, y) that every operation understands, defined here and
// nowhere else: the enum, the compile-time dispatch (visit_kernel and
// SIMGAP_KERNEL_SWITCH), the checks of the compiled modules and the list both
// Python modules export (kernel_types, in this order, code = position) all
// expand this table.  Distances are Euclidean; sigma is the bandwidth.
//
// X(Type, name, distance, root, bandwidth):
//   distance   k depends on ||x - y|| only: translation invariant (the inputs
//              may be centred before the Gram product to avoid cancellation),
//              and k(x, x) = k(0) exactly on the diagonal;
//   root       k takes ||x - y|| itself, the square root of the Gram-identity
//              d2, whose absolute error becomes a large relative error for
//              near-duplicate points: those pairs are recomputed exactly;
//   bandwidth  k has a bandwidth sigma (KernelParams::scale).
// A new kernel is one row here plus its formula in kernel_value
// (simgap/kernel_math.h) and its scales in the Python KernelSpec.
#define SIMGAP_KERNELS(X)                                                                    \
  /* exp(-||x-y||^2 / (2 sigma^2)), summed over several sigmas */                            \
  X(Gaussian, "gaussian", true, false, true)                                                 \
  X(Laplacian, "laplacian", true, true, true)        /* exp(-||x-y|| / sigma) */             \
  X(IMQ, "imq", true, false, true)                   /* (1 + ||x-y||^2 / sigma^2)^(-1/2) */  \
  X(Polynomial, "polynomial", false, false, false)   /* (gamma <x,y> + coef0)^degree */      \
  X(Linear, "linear", false, false, false)           /* <x,y> */                             \
  X(Energy, "energy", true, true, false)             /* -||x-y|| */

enum class KernelType : int {
#define SIMGAP_KERNEL_ENUM_(Type, ...) Type,
  SIMGAP_KERNELS(SIMGAP_KERNEL_ENUM_)
#undef SIMGAP_KERNEL_ENUM_
};

// The number of kernels: codes are 0 .. kNumKernels - 1.
#define SIMGAP_KERNEL_COUNT_(...) +1
constexpr int kNumKernels = 0 SIMGAP_KERNELS(SIMGAP_KERNEL_COUNT_);
#undef SIMGAP_KERNEL_COUNT_

// The most bandwidths a multi-scale Gaussian may sum over.
constexpr int kMaxBandwidths = 32;

// Parameters of one kernel, in the form the per-pair math wants (scales are
// precomputed so that the hot loop multiplies instead of dividing).
struct KernelParams {
  KernelType type = KernelType::Gaussian;
  int n_scales = 1;                  // number of entries used in `scale`
  double scale[kMaxBandwidths] = {}; // gaussian: 1/(2 sigma^2); laplacian: 1/sigma; imq: 1/sigma^2
  double gamma = 1.0;                // polynomial
  double coef0 = 1.0;                // polynomial
  int degree = 3;                    // polynomial, >= 1
};

// The table's properties of a kernel (see SIMGAP_KERNELS); constexpr, so that
// `if constexpr (uses_distance(KT))` folds in the per-kernel loops.
SIMGAP_HOST_DEVICE constexpr bool uses_distance(KernelType t) {
  switch (t) {
#define SIMGAP_KERNEL_CASE_(Type, name, distance, root, bandwidth) \
  case KernelType::Type: return distance;
    SIMGAP_KERNELS(SIMGAP_KERNEL_CASE_)
#undef SIMGAP_KERNEL_CASE_
  }
  return false;
}
SIMGAP_HOST_DEVICE constexpr bool uses_root_distance(KernelType t) {
  switch (t) {
#define SIMGAP_KERNEL_CASE_(Type, name, distance, root, bandwidth) \
  case KernelType::Type: return root;
    SIMGAP_KERNELS(SIMGAP_KERNEL_CASE_)
#undef SIMGAP_KERNEL_CASE_
  }
  return false;
}

// A kernel type as a type: the argument visit_kernel passes.
template <KernelType KT>
struct KernelTag {
  static constexpr KernelType value = KT;
};

// Runs f(KernelTag<KT>{}) with KT the compile-time value of t and returns its
// result, or otherwise() when t is not in the table.  Throws nothing itself,
// so the per-instruction-set tile loops can use it (tile_ops_isa.cpp); host
// code only (the CUDA launchers use it through SIMGAP_KERNEL_SWITCH).
template <typename F, typename G>
inline auto visit_kernel(KernelType t, F&& f, G&& otherwise) -> decltype(otherwise()) {
  switch (t) {
#define SIMGAP_KERNEL_CASE_(Type, ...) \
  case KernelType::Type: return f(KernelTag<KernelType::Type>{});
    SIMGAP_KERNELS(SIMGAP_KERNEL_CASE_)
#undef SIMGAP_KERNEL_CASE_
  }
  return otherwise();
}

// A strided, read-only 2-D view: element (i, k) is ptr[r*row_stride + k*col_stride]
// with r = index[i] when an index is given (a subset or permutation of the
// rows, without a copy), else r = i.  Strides are in elements and may be negative.
template <typename T>
struct MatrixView {
  const T* ptr = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  const int64_t* index = nullptr;
  SIMGAP_HOST_DEVICE const T* row(int64_t i) const {
    return ptr + (index ? index[i] : i) * row_stride;
  }
};

}  // namespace simgap
