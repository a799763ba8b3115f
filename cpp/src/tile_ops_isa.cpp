// Tile loops for one instruction set.  CMake compiles this file once per
// instruction set with SIMGAP_ISA_NS, SIMGAP_VEC_BYTES and SIMGAP_MR defined
// (see CMakeLists.txt); everything here lives in that namespace and uses no
// standard-library templates, so no code for a wider instruction set can be
// shared with the generic build.
#include <cstdint>

#include "simgap/common.h"
#include "simgap/kernel_math.h"
#include "tile_ops.h"

#if !defined(SIMGAP_ISA_NS) || !defined(SIMGAP_ISA_TAG) || !defined(SIMGAP_VEC_BYTES) || !defined(SIMGAP_MR)
#error "SIMGAP_ISA_NS, SIMGAP_ISA_TAG, SIMGAP_VEC_BYTES and SIMGAP_MR must be defined by the build"
#endif
#define SIMGAP_STR_(x) #x
#define SIMGAP_STR(x) SIMGAP_STR_(x)

namespace simgap {
namespace cpu {
namespace SIMGAP_ISA_NS {

namespace {

template <typename T>
struct Panels {
  static constexpr int NR = 2 * SIMGAP_VEC_BYTES / static_cast<int>(sizeof(T));
  static constexpr int MR = SIMGAP_MR;
  static_assert(kTile % NR == 0 && kTile % MR == 0, "tile must hold whole panels");
};

template <typename T>
void pack(const MatrixView<T>& v, const double* center, int64_t r0, int64_t rows, int panel,
          T* buf, T* norms) {
  const int64_t d = v.cols;
  const int64_t cs = v.col_stride;
  constexpr int64_t kChunk = 64;
  constexpr int kMaxPanel = 32;
  // Rows of one panel are gathered (centred, converted) into tmp, then written
  // out k-major with sequential stores.
  alignas(64) T tmp[kMaxPanel * kChunk];
  double sq[kMaxPanel];
  const int64_t npanels = (rows + panel - 1) / panel;
  for (int64_t p = 0; p < npanels; ++p) {
    const int64_t pr = (rows - p * panel) < panel ? (rows - p * panel) : panel;
    for (int i = 0; i < panel; ++i) sq[i] = 0.0;
    T* dst = buf + p * d * panel;
    for (int64_t k0 = 0; k0 < d; k0 += kChunk) {
      const int64_t kn = (d - k0) < kChunk ? (d - k0) : kChunk;
      for (int64_t i = 0; i < panel; ++i) {
        T* t = tmp + i * kChunk;
        if (i >= pr) {
          for (int64_t k = 0; k < kn; ++k) t[k] = T(0);
          continue;
        }
        const T* sk = v.row(r0 + p * panel + i) + k0 * cs;
        if (center != nullptr) {
          const double* ck = center + k0;
          if (cs == 1) {
#pragma omp simd
            for (int64_t k = 0; k < kn; ++k) t[k] = T(double(sk[k]) - ck[k]);
          } else {
            for (int64_t k = 0; k < kn; ++k) t[k] = T(double(sk[k * cs]) - ck[k]);
          }
        } else if (cs == 1) {
#pragma omp simd
          for (int64_t k = 0; k < kn; ++k) t[k] = sk[k];
        } else {
          for (int64_t k = 0; k < kn; ++k) t[k] = sk[k * cs];
        }
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < kn; ++k) s += double(t[k]) * double(t[k]);
        sq[i] += s;
      }
      T* dk = dst + k0 * panel;
      for (int64_t k = 0; k < kn; ++k)
        for (int64_t i = 0; i < panel; ++i) dk[k * panel + i] = tmp[i * kChunk + k];
    }
    for (int64_t i = 0; i < panel; ++i) norms[p * panel + i] = T(sq[i]);
  }
}

// Register-blocked MR x NR block of inner products over the packed panels.
template <typename T, int MR, int NR>
inline void micro_gram(const T* __restrict a, const T* __restrict b, int64_t d,
                       T (&acc)[MR][NR]) {
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = T(0);
  for (int64_t k = 0; k < d; ++k) {
    const T* __restrict ak = a + k * MR;
    const T* __restrict bk = b + k * NR;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T av = ak[i];
#pragma omp simd
      for (int j = 0; j < NR; ++j) acc[i][j] += av * bk[j];
    }
  }
}

// In place: row[j] holds ||x-y||^2 (distance kernels) or <x,y> (the others)
// and becomes k(x, y).  Loops are kept free of inner loops so they vectorise.
template <KernelType KT, typename T>
void apply_kernel_row(const KernelParams& kp, T* __restrict row, int64_t len) {
  if constexpr (KT == KernelType::Gaussian) {
    if (kp.n_scales == 1) {
      const T c = T(-kp.scale[0]);
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) row[j] = exp_approx(row[j] * c);
    } else {
      alignas(64) T acc[kTile];
      alignas(64) T d2[kTile];
      for (int64_t j0 = 0; j0 < len; j0 += kTile) {
        const int64_t jn = (len - j0) < kTile ? (len - j0) : kTile;
#pragma omp simd
        for (int64_t j = 0; j < jn; ++j) { d2[j] = row[j0 + j]; acc[j] = T(0); }
        for (int s = 0; s < kp.n_scales; ++s) {
          const T c = T(-kp.scale[s]);
#pragma omp simd
          for (int64_t j = 0; j < jn; ++j) acc[j] += exp_approx(d2[j] * c);
        }
#pragma omp simd
        for (int64_t j = 0; j < jn; ++j) row[j0 + j] = acc[j];
      }
    }
  } else if constexpr (KT == KernelType::Polynomial) {
    const T gm = T(kp.gamma), c0 = T(kp.coef0);
    if (kp.degree == 3) {
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) { const T b = gm * row[j] + c0; row[j] = b * b * b; }
    } else {
      for (int64_t j = 0; j < len; ++j) row[j] = int_pow(gm * row[j] + c0, kp.degree);
    }
  } else if constexpr (KT == KernelType::Linear) {
    (void)kp; (void)row; (void)len;
  } else {
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) row[j] = kernel_value<KT, T>(row[j], T(0), kp);
  }
}

template <KernelType KT, typename T>
void kernel_tile_impl(const KernelParams& kp, const T* xp, const T* xn, int64_t ni, const T* yp,
                      const T* yn, int64_t nj, int64_t d, T* K, int64_t ldk, bool raw) {
  constexpr int MR = Panels<T>::MR, NR = Panels<T>::NR;
  constexpr bool kDist = uses_distance(KT);
  const int64_t pi = (ni + MR - 1) / MR, pj = (nj + NR - 1) / NR;
  for (int64_t jp = 0; jp < pj; ++jp) {
    const T* b = yp + jp * d * NR;
    const T* ynj = yn + jp * NR;
    const int64_t jn = (nj - jp * NR) < NR ? (nj - jp * NR) : NR;
    for (int64_t ip = 0; ip < pi; ++ip) {
      T acc[MR][NR];
      micro_gram<T, MR, NR>(xp + ip * d * MR, b, d, acc);
      const int64_t in = (ni - ip * MR) < MR ? (ni - ip * MR) : MR;
      for (int i = 0; i < in; ++i) {
        T* __restrict row = K + (ip * MR + i) * ldk + jp * NR;
        if constexpr (kDist) {
          const T xni = xn[ip * MR + i];
          if (jn == NR) {
#pragma omp simd
            for (int j = 0; j < NR; ++j) {
              const T d2 = xni + ynj[j] - T(2) * acc[i][j];
              row[j] = d2 > T(0) ? d2 : T(0);
            }
          } else {
            for (int j = 0; j < jn; ++j) {
              const T d2 = xni + ynj[j] - T(2) * acc[i][j];
              row[j] = d2 > T(0) ? d2 : T(0);
            }
          }
        } else {
          for (int j = 0; j < jn; ++j) row[j] = acc[i][j];
        }
      }
    }
  }
  if (!raw)
    for (int64_t i = 0; i < ni; ++i) apply_kernel_row<KT, T>(kp, K + i * ldk, nj);
}

// The kernel type was validated by the caller; no exceptions are thrown here
// (an unknown type does nothing).
template <typename T>
void kernel_tile(const KernelParams& kp, const T* xp, const T* xn, int64_t ni, const T* yp,
                 const T* yn, int64_t nj, int64_t d, T* K, int64_t ldk, bool raw) {
  visit_kernel(
      kp.type,
      [&](auto kt) {
        kernel_tile_impl<decltype(kt)::value, T>(kp, xp, xn, ni, yp, yn, nj, d, K, ldk, raw);
      },
      [] {});
}

template <typename T>
void apply_tile(const KernelParams& kp, T* K, int64_t ldk, int64_t ni, int64_t nj) {
  visit_kernel(
      kp.type,
      [&](auto kt) {
        for (int64_t i = 0; i < ni; ++i) apply_kernel_row<decltype(kt)::value, T>(kp, K + i * ldk, nj);
      },
      [] {});
}

// out += K @ W with the same register-blocked micro-kernel as the Gram tiles:
// K's rows are packed into MR-row panels (depth = j), W's columns into
// NR-column panels.
template <typename T>
void contract_gemm(const T* K, int64_t ldk, int64_t ni, int64_t nj, const T* W, int64_t ldw,
                   int64_t q, double* out, int64_t ldo, T* scratch) {
  constexpr int MR = Panels<T>::MR, NR = Panels<T>::NR;
  const int64_t pi = (ni + MR - 1) / MR, pq = (q + NR - 1) / NR;
  T* kp = scratch;
  T* wp = scratch + pi * MR * nj;
  for (int64_t ip = 0; ip < pi; ++ip) {
    T* dst = kp + ip * nj * MR;
    const int64_t in = (ni - ip * MR) < MR ? (ni - ip * MR) : MR;
    for (int64_t j = 0; j < nj; ++j) {
      for (int64_t i = 0; i < in; ++i) dst[j * MR + i] = K[(ip * MR + i) * ldk + j];
      for (int64_t i = in; i < MR; ++i) dst[j * MR + i] = T(0);
    }
  }
  for (int64_t cp = 0; cp < pq; ++cp) {
    T* dst = wp + cp * nj * NR;
    const int64_t cn = (q - cp * NR) < NR ? (q - cp * NR) : NR;
    for (int64_t j = 0; j < nj; ++j) {
      const T* src = W + j * ldw + cp * NR;
      for (int64_t c = 0; c < cn; ++c) dst[j * NR + c] = src[c];
      for (int64_t c = cn; c < NR; ++c) dst[j * NR + c] = T(0);
    }
  }
  for (int64_t cp = 0; cp < pq; ++cp) {
    const int64_t cn = (q - cp * NR) < NR ? (q - cp * NR) : NR;
    for (int64_t ip = 0; ip < pi; ++ip) {
      T acc[MR][NR];
      micro_gram<T, MR, NR>(kp + ip * nj * MR, wp + cp * nj * NR, nj, acc);
      const int64_t in = (ni - ip * MR) < MR ? (ni - ip * MR) : MR;
      for (int64_t i = 0; i < in; ++i) {
        double* o = out + (ip * MR + i) * ldo + cp * NR;
        for (int64_t c = 0; c < cn; ++c) o[c] += double(acc[i][c]);
      }
    }
  }
}

template <typename T>
void contract_tile(const T* K, int64_t ldk, int64_t ni, int64_t nj, const T* bt, int64_t ldb,
                   int64_t q, double* out, int64_t ldo) {
  for (int64_t i = 0; i < ni; ++i) {
    const T* __restrict row = K + i * ldk;
    for (int64_t c = 0; c < q; ++c) {
      const T* __restrict w = bt + c * ldb;
      T s = T(0);
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < nj; ++j) s += row[j] * w[j];
      out[i * ldo + c] += double(s);
    }
  }
}

template <typename T>
double sum_tile(const T* K, int64_t ldk, int64_t ni, int64_t nj, const double* a, const T* b) {
  double total = 0.0;
  for (int64_t i = 0; i < ni; ++i) {
    const T* __restrict row = K + i * ldk;
    T s = T(0);
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < nj; ++j) s += row[j] * b[j];
    total += (a ? a[i] : 1.0) * double(s);
  }
  return total;
}

template <typename T>
TileOps<T> make_ops() {
  TileOps<T> ops;
  ops.isa = SIMGAP_STR(SIMGAP_ISA_TAG);
  ops.mr = Panels<T>::MR;
  ops.nr = Panels<T>::NR;
  ops.pack = &pack<T>;
  ops.kernel_tile = &kernel_tile<T>;
  ops.apply_tile = &apply_tile<T>;
  ops.contract_gemm = &contract_gemm<T>;
  ops.contract_tile = &contract_tile<T>;
  ops.sum_tile = &sum_tile<T>;
  return ops;
}

}  // namespace

const TileOps<float>& ops_f32() {
  static const TileOps<float> ops = make_ops<float>();
  return ops;
}
const TileOps<double>& ops_f64() {
  static const TileOps<double> ops = make_ops<double>();
  return ops;
}

}  // namespace SIMGAP_ISA_NS
}  // namespace cpu
}  // namespace simgap
