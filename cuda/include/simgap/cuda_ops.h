// Declarations of the CUDA launchers.  Plain C++ (no CUDA syntax), so the
// pybind11 binding compiles with the host compiler.  Every launcher checks the
// status of what it launches and returns it; empty input never launches.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "simgap/common.h"

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

}  // namespace cuda
}  // namespace simgap
