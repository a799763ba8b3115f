// kernel_rowwise on the GPU: k(x_i, y_i) for paired rows.  The squared
// distances and inner products of the pairs come from torch (in float64); this
// file evaluates the kernel on them elementwise with the per-pair math of
// simgap/kernel_math.h (kernel_values).  The linear and block estimators'
// kernel values go through it too.
#include <cuda_runtime.h>

#include "simgap/cuda_ops.h"
#include "simgap/kernel_math.h"
#include "simgap/static_switch.h"

namespace simgap {
namespace cuda {

namespace {

template <KernelType KT, typename T>
__global__ void kernel_values_kernel(KernelParams kp, const T* __restrict__ d2,
                                     const T* __restrict__ g, T* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    T v = d2[i];
    v = v > T(0) ? v : T(0);
    out[i] = kernel_value<KT, T>(v, g[i], kp);
  }
}

}  // namespace

template <typename T>
cudaError_t kernel_values(const KernelParams& kp, const T* d2, const T* g, T* out, int64_t n,
                          cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t want = (n + threads - 1) / threads;
  const int blocks = static_cast<int>(want < 65535 ? want : 65535);
  SIMGAP_KERNEL_SWITCH(kp.type, KT, [&] {
    kernel_values_kernel<KT, T><<<blocks, threads, 0, stream>>>(kp, d2, g, out, n);
  });
  return cudaGetLastError();
}

template cudaError_t kernel_values<float>(const KernelParams&, const float*, const float*, float*,
                                          int64_t, cudaStream_t);
template cudaError_t kernel_values<double>(const KernelParams&, const double*, const double*,
                                           double*, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace simgap
