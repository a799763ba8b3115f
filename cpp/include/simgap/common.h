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

// The kernels k(x, y) that every operation understands.  Distances are
// Euclidean; sigma is the bandwidth.
enum class KernelType : int {
  Gaussian = 0,    // exp(-||x-y||^2 / (2 sigma^2)), summed over several sigmas
  Laplacian = 1,   // exp(-||x-y|| / sigma)
  IMQ = 2,         // (1 + ||x-y||^2 / sigma^2)^(-1/2)
  Polynomial = 3,  // (gamma <x,y> + coef0)^degree
  Linear = 4,      // <x,y>
  Energy = 5,      // -||x-y||
};

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

// True when the kernel needs ||x-y|| (and so is translation invariant: the
// inputs may be centred before the Gram product to avoid cancellation).
SIMGAP_HOST_DEVICE bool uses_distance(KernelType t) {
  return t == KernelType::Gaussian || t == KernelType::Laplacian ||
         t == KernelType::IMQ || t == KernelType::Energy;
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
