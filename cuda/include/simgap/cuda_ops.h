// Declarations of the CUDA launchers.  Plain C++ (no CUDA syntax), so the
// pybind11 binding compiles with the host compiler.  They take the same
// parameter structs as the CPU operations (simgap/ops.h) with device pointers;
// every launcher returns the status of what it launched, and empty input never
// launches.  Inputs must be C-contiguous (row_stride == cols, col_stride == 1,
// no row index): the Python layer makes them so.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "simgap/common.h"
#include "simgap/ops.h"

namespace simgap {
namespace cuda {

// Number of visible devices (0 when there is no driver or no GPU), and the
// runtime and driver versions (0 for the driver when none is installed).
int device_count();
int runtime_version();
int driver_version();
std::string device_name(int device);

// out[i] = k evaluated from d2[i] (squared distance) and g[i] (inner product)
// on the device, with the same per-pair math as the CPU tiles
// (simgap/kernel_math.h).  All pointers are device pointers.
template <typename T>
cudaError_t kernel_values(const KernelParams& kp, const T* d2, const T* g, T* out, int64_t n,
                          cudaStream_t stream);

// Squared norms of the centred rows, in float64: norms[i] = ||x_i - center||^2
// with the centred values rounded to T first (as the tiles see them).
template <typename T>
cudaError_t row_norms(const MatrixView<T>& x, const double* center, double* norms,
                      cudaStream_t stream);

// out (n x q, float64, zero-initialised by the caller) += K(x, y) @ weights.
// xnorms / ynorms: row_norms of x and y with the same center.
template <typename T>
cudaError_t kernel_contract(const ContractParams<T>& p, const double* xnorms,
                            const double* ynorms, cudaStream_t stream);

// out (n x m, T) = K(x, y).
template <typename T>
cudaError_t kernel_matrix(const MatrixParams<T>& p, const double* xnorms, const double* ynorms,
                          cudaStream_t stream);

}  // namespace cuda
}  // namespace simgap
