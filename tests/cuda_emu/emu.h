// Tiny SIMT emulator for tests/test_cuda_emulated.py: one std::thread per CUDA
// thread, blocks run one after another.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>
#include <cstdio>
#include <cstdlib>
struct uint3_ { unsigned x = 0, y = 0, z = 0; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorInvalidConfiguration = 9, cudaErrorNotSupported = 801 };
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75 };
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline int emu_compute_major = 9;  // the emulated device: sm_90
// The sources' grid caps (65535 and 1 << 20 in the CUDA code) read EMU_CAP: a
// variable, so that one build runs with the real caps and with 2 (the driver's
// second argument), which forces every grid-stride loop.
#ifndef EMU_CAP
inline long emu_cap = 65535;
#define EMU_CAP emu_cap
#endif
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = emu_compute_major; return cudaSuccess; }
typedef struct CUstream_st* cudaStream_t;
inline thread_local dim3 threadIdx(0, 0, 0), blockIdx(0, 0, 0);
inline dim3 gridDim, blockDim;
namespace emu {
inline std::barrier<>* block_bar = nullptr;
inline std::vector<std::barrier<>*> warp_bars;
inline double shfl_buf[1024];
inline std::mutex atomic_mu;
inline int last_error = 0;
inline int tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline void launch(dim3 g, dim3 b, std::function<void()> fn) {
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 || b.x * b.y * b.z > 1024) {
    last_error = cudaErrorInvalidConfiguration; std::fprintf(stderr, "EMU: bad launch config\n"); return;
  }
  gridDim = g; blockDim = b;
  const int nt = b.x * b.y * b.z;
  if (nt % 32) { std::fprintf(stderr, "EMU: block not a multiple of 32\n"); std::abort(); }
  // One std::thread per CUDA thread for the whole launch; the blocks run one
  // after another, separated by a barrier of their own (so that __shared__
  // data, emulated as static, is never used by two blocks at once).
  std::barrier<> bar(nt), block_end(nt);
  block_bar = &bar;
  std::vector<std::barrier<>*> wb;
  for (int w = 0; w < nt / 32; ++w) wb.push_back(new std::barrier<>(32));
  warp_bars = wb;
  std::vector<std::thread> th;
  for (int t = 0; t < nt; ++t)
    th.emplace_back([&, t] {
      threadIdx = dim3(t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
      for (unsigned bz = 0; bz < g.z; ++bz)
        for (unsigned by = 0; by < g.y; ++by)
          for (unsigned bx = 0; bx < g.x; ++bx) {
            blockIdx = dim3(bx, by, bz);
            fn();
            block_end.arrive_and_wait();
          }
    });
  for (auto& x : th) x.join();
  for (auto* p : wb) delete p;
}
}  // namespace emu
inline int cudaGetLastError() { int e = emu::last_error; emu::last_error = 0; return e; }
inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }
namespace emu {
// Every lane publishes v, then reads lane src's value (its own when src < 0).
template <typename V>
inline V warp_exchange(unsigned mask, V v, int src) {
  if (mask != 0xffffffffu) { std::fprintf(stderr, "EMU: partial mask\n"); std::abort(); }
  const int t = tid(), w = t / 32;
  shfl_buf[t] = double(v);
  warp_bars[w]->arrive_and_wait();
  const double r = src >= 0 ? shfl_buf[w * 32 + src] : double(v);
  warp_bars[w]->arrive_and_wait();
  return V(r);
}
}  // namespace emu
template <typename V>
inline V __shfl_down_sync(unsigned mask, V v, unsigned off, int width = 32) {
  const int lane = emu::tid() % 32, seg = lane % width;
  return emu::warp_exchange(mask, v, seg + int(off) < width ? lane + int(off) : -1);
}
template <typename V>
inline V __shfl_xor_sync(unsigned mask, V v, int lane_mask, int width = 32) {
  const int lane = emu::tid() % 32, src = lane ^ lane_mask;
  return emu::warp_exchange(mask, v, src / width == lane / width ? src : -1);
}
inline double atomicAdd(double* p, double v) {
  std::lock_guard<std::mutex> g(emu::atomic_mu); double o = *p; *p += v; return o;
}
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
