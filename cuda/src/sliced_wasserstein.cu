// sliced_wasserstein on the GPU, after the projection (one cuBLAS GEMM per
// chunk of directions, through torch): CUB radix sorts of each direction's
// projected values, then the exact 1-D distances read off the two quantile
// functions, summed per direction in float64.
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "simgap/cuda_ops.h"

namespace simgap {
namespace cuda {

namespace {

// Rows at least this long are sorted one by one with the device-wide (onesweep)
// radix sort, which fills the GPU; shorter rows go through one segmented sort,
// where each row is one thread block's work.
constexpr int64_t kLongRow = int64_t(1) << 16;

__global__ void row_offsets_kernel(int* offsets, int64_t len, int64_t rows) {
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r <= rows) offsets[r] = static_cast<int>(r * len);
}

// Bytes of the offsets array kept at the front of the temporary storage (16-byte aligned).
inline size_t offsets_bytes(int64_t rows) {
  return ((static_cast<size_t>(rows + 1) * sizeof(int) + 15) / 16) * 16;
}

// The cumulative weight at the end of step i of a quantile function with
// `len` steps: (i + 1) / len for uniform weights (equal rationals give equal
// doubles, so ties between the two sides are exact), the scanned weight
// otherwise; the last step closes at exactly 1.
__device__ __forceinline__ double cum_at(const double* cum, int64_t i, int64_t len) {
  if (i < 0) return 0.0;
  if (i >= len - 1) return 1.0;
  return cum ? cum[i] : double(i + 1) / double(len);
}

__device__ __forceinline__ double pow_p(double diff, double p) {
  const double a = fabs(diff);
  if (p == 2.0) return a * a;
  if (p == 1.0) return a;
  return pow(a, p);
}

constexpr int kThreads = 256;

// grid.x covers the longer side (a, length na), grid.y the rows.  Thread i
// integrates |a_i - b_j|^p over the overlap of a's step i with each of b's
// steps j that it meets.
template <typename T>
__global__ void __launch_bounds__(kThreads) w1d_kernel(const T* __restrict__ a_all, int64_t na,
                                                       const double* __restrict__ ca_all,
                                                       const T* __restrict__ b_all, int64_t nb,
                                                       const double* __restrict__ cb_all,
                                                       int64_t rows, double p,
                                                       double* __restrict__ out) {
  __shared__ double partial[kThreads / 32];
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* a = a_all + r * na;
    const T* b = b_all + r * nb;
    const double* ca = ca_all ? ca_all + r * na : nullptr;
    const double* cb = cb_all ? cb_all + r * nb : nullptr;
    double cost = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < na;
         i += int64_t(gridDim.x) * kThreads) {
      const double lo = cum_at(ca, i - 1, na), hi = cum_at(ca, i, na);
      if (!(hi > lo)) continue;  // a zero-weight step
      // First step j of b that ends after lo.
      int64_t left = 0, right = nb - 1;
      while (left < right) {
        const int64_t mid = left + (right - left) / 2;
        if (cum_at(cb, mid, nb) > lo) right = mid;
        else left = mid + 1;
      }
      const double ai = double(a[i]);
      for (int64_t j = left; j < nb; ++j) {
        const double start = cum_at(cb, j - 1, nb);
        if (start >= hi) break;
        const double end = cum_at(cb, j, nb);
        const double seg = (end < hi ? end : hi) - (start > lo ? start : lo);
        if (seg > 0.0) cost += seg * pow_p(ai - double(b[j]), p);
      }
    }
    for (int off = 16; off > 0; off /= 2) cost += __shfl_down_sync(0xffffffffu, cost, off);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = cost;
    __syncthreads();
    if (threadIdx.x == 0) {
      double s = 0.0;
      for (int w = 0; w < kThreads / 32; ++w) s += partial[w];
      atomicAdd(out + r, s);
    }
    __syncthreads();
  }
}

}  // namespace

template <typename T>
cudaError_t sort_rows_temp_bytes(int64_t len, int64_t rows, size_t* out) {
  *out = 0;
  if (len < 0 || rows < 0) return cudaErrorInvalidValue;
  if (len == 0 || rows == 0) return cudaSuccess;
  size_t bytes = 0;
  if (len >= kLongRow) {
    const cudaError_t st = cub::DeviceRadixSort::SortKeys(
        nullptr, bytes, static_cast<const T*>(nullptr), static_cast<T*>(nullptr), len);
    *out = bytes;
    return st;
  }
  if (len * rows > int64_t(0x7fffffff)) return cudaErrorInvalidValue;  // the caller chunks rows
  const cudaError_t st = cub::DeviceSegmentedRadixSort::SortKeys(
      nullptr, bytes, static_cast<const T*>(nullptr), static_cast<T*>(nullptr),
      static_cast<int>(len * rows), static_cast<int>(rows), static_cast<const int*>(nullptr),
      static_cast<const int*>(nullptr));
  *out = bytes + offsets_bytes(rows);
  return st;
}

template <typename T>
cudaError_t sort_rows(const T* in, T* out, int64_t len, int64_t rows, void* temp,
                      size_t temp_bytes, cudaStream_t stream) {
  if (len < 0 || rows < 0) return cudaErrorInvalidValue;
  if (len == 0 || rows == 0) return cudaSuccess;
  size_t needed = 0;
  const cudaError_t query = sort_rows_temp_bytes<T>(len, rows, &needed);
  if (query != cudaSuccess) return query;
  if (temp_bytes < needed) return cudaErrorInvalidValue;
  if (len >= kLongRow) {
    for (int64_t r = 0; r < rows; ++r) {
      size_t bytes = temp_bytes;
      const cudaError_t st = cub::DeviceRadixSort::SortKeys(temp, bytes, in + r * len,
                                                            out + r * len, len, 0,
                                                            int(sizeof(T) * 8), stream);
      if (st != cudaSuccess) return st;
    }
    return cudaGetLastError();
  }
  if (len * rows > int64_t(0x7fffffff)) return cudaErrorInvalidValue;  // the caller chunks rows
  int* offsets = static_cast<int*>(temp);
  const size_t head = offsets_bytes(rows);
  row_offsets_kernel<<<static_cast<unsigned>((rows + 1 + 255) / 256), 256, 0, stream>>>(offsets,
                                                                                      len, rows);
  cudaError_t st = cudaGetLastError();
  if (st != cudaSuccess) return st;
  size_t bytes = temp_bytes - head;
  st = cub::DeviceSegmentedRadixSort::SortKeys(static_cast<char*>(temp) + head, bytes, in, out,
                                               static_cast<int>(len * rows),
                                               static_cast<int>(rows), offsets, offsets + 1, 0,
                                               int(sizeof(T) * 8), stream);
  if (st != cudaSuccess) return st;
  return cudaGetLastError();
}

template <typename T>
cudaError_t wasserstein_1d(const T* u, int64_t n, const double* cu, const T* v, int64_t m,
                           const double* cv, int64_t rows, double p, double* out,
                           cudaStream_t stream) {
  if (n == 0 || m == 0 || rows == 0) return cudaSuccess;
  // Threads walk the longer side, so each visits about one step of the other.
  const bool swap = m > n;
  const T* a = swap ? v : u;
  const T* b = swap ? u : v;
  const double* ca = swap ? cv : cu;
  const double* cb = swap ? cu : cv;
  const int64_t na = swap ? m : n, nb = swap ? n : m;
  const int64_t want = (na + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(want < 4096 ? want : 4096),
                  static_cast<unsigned>(rows < 65535 ? rows : 65535));
  w1d_kernel<T><<<grid, kThreads, 0, stream>>>(a, na, ca, b, nb, cb, rows, p, out);
  return cudaGetLastError();
}

template cudaError_t sort_rows_temp_bytes<float>(int64_t, int64_t, size_t*);
template cudaError_t sort_rows_temp_bytes<double>(int64_t, int64_t, size_t*);
template cudaError_t sort_rows<float>(const float*, float*, int64_t, int64_t, void*, size_t,
                                      cudaStream_t);
template cudaError_t sort_rows<double>(const double*, double*, int64_t, int64_t, void*, size_t,
                                       cudaStream_t);
template cudaError_t wasserstein_1d<float>(const float*, int64_t, const double*, const float*,
                                           int64_t, const double*, int64_t, double, double*,
                                           cudaStream_t);
template cudaError_t wasserstein_1d<double>(const double*, int64_t, const double*, const double*,
                                            int64_t, const double*, int64_t, double, double*,
                                            cudaStream_t);

}  // namespace cuda
}  // namespace simgap
