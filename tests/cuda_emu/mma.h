// WMMA for the emulator (tests/test_cuda_emulated.py).  Every thread of a warp
// holds the whole fragment (num_elements = rows x cols, row-major), so the
// warp-collective operations become plain loops: each lane loads the tile,
// multiplies it in float (fp32 accumulation of products of the given values),
// and lane 0 stores it.  The layouts (row_major A, col_major B, ldm) are
// interpreted as CUDA documents them; what this cannot check is the hardware.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "cuda_bf16.h"
#include "emu.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

template <typename T> struct storage { using type = T; };
template <> struct storage<precision::tf32> { using type = float; };

template <typename Use, int M, int N, int K> struct shape;
template <int M, int N, int K> struct shape<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct shape<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct shape<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  using element_type = typename storage<T>::type;
  static constexpr int rows = shape<Use, M, N, K>::rows, cols = shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  element_type x[num_elements];
};

template <typename F, typename V> inline void fill_fragment(F& f, V v) {
  for (auto& e : f.x) e = typename F::element_type(v);
}

// A (rows x cols) row-major: element (i, k) at p[i * ldm + k]; B col-major:
// element (k, j) at p[k + j * ldm].
template <typename Use, int M, int N, int K, typename T, typename Layout, typename P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const P* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, Layout>;
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) { std::fprintf(stderr, "EMU: wmma pointer not 32-byte aligned\n"); std::abort(); }
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = std::is_same<Layout, col_major>::value ? p[r + size_t(c) * ldm] : p[size_t(r) * ldm + c];
}

inline float __float_to_tf32(float v) {  // 10 explicit mantissa bits, nearest
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x1000u) & ~0x1FFFu;
  std::memcpy(&v, &u, 4);
  return v;
}

template <typename E> inline float as_float(E e) { return float(e); }

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += as_float(a.x[i * K + k]) * as_float(b.x[k * N + j]);
      out[i * N + j] = s;
    }
  std::memcpy(d.x, out, sizeof out);
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
  if (reinterpret_cast<std::uintptr_t>(p) % 32 != 0) { std::fprintf(stderr, "EMU: wmma pointer not 32-byte aligned\n"); std::abort(); }
  if (emu::tid() % 32 != 0) return;  // one lane writes; the kernel synchronises before reading
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      p[layout == mem_row_major ? size_t(i) * ldm + j : i + size_t(j) * ldm] = f.x[i * N + j];
}
}  // namespace wmma
}  // namespace nvcuda
