// The fused tensor-core contraction (kernel_contract_tc.cu) on the emulator
// (tests/test_cuda_emulated.py; mma.h emulates WMMA): out += K(x, y) w and the
// symmetric split w' K w = w' out + 2 w' upper, against float64 references
// computed from the same rounded operands, on ragged sizes, several feature
// slices, plain / same / exclude-diagonal, tf32 and bf16.
#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "cuda_bf16.h"
#include "emu.h"
#include "mma.h"
#include "simgap/cuda_ops.h"
#include "simgap/kernel_args.h"
#include "simgap/kernel_math.h"
#include "reference.h"

using namespace simgap;
static void run_case(int kt, int64_t n, int64_t m, int64_t d, int64_t q, bool same, bool excl, bool bf16,
                     std::mt19937& rng) {
  std::normal_distribution<double> N(0, 1);
  if (same) m = n;
  // The operands as the kernel sees them: rounded to tf32 (10 mantissa bits) or bf16.
  auto round = [&](double v) {
    if (bf16) return float(__float2bfloat16(float(v)));
    return nvcuda::wmma::__float_to_tf32(float(v));
  };
  std::vector<float> x(n * d), y0(m * d), w(m * q);
  for (auto& v : x) v = round(N(rng));
  for (auto& v : y0) v = round(N(rng) + 0.3);
  for (auto& v : w) v = float(N(rng));
  const std::vector<float>& y = same ? x : y0;
  std::vector<__nv_bfloat16> xb(n * d), yb(m * d);
  for (size_t i = 0; i < x.size(); ++i) xb[i] = __float2bfloat16(x[i]);
  for (size_t i = 0; i < y.size(); ++i) yb[i] = __float2bfloat16(y[i]);
  std::vector<double> xn(n, 0.0), yn(m, 0.0);
  for (int64_t i = 0; i < n; ++i) for (int64_t k = 0; k < d; ++k) xn[i] += double(x[i * d + k]) * x[i * d + k];
  for (int64_t i = 0; i < m; ++i) for (int64_t k = 0; k < d; ++k) yn[i] += double(y[i * d + k]) * y[i * d + k];
  std::vector<double> sc = {1.0 / (2 * 0.5 * d)};
  if (kt == 0) sc = {1.0 / (2 * 0.25 * d), 1.0 / (2.0 * d)};
  if (kt == 1) sc = {1.0 / std::sqrt(double(d))};
  if (kt == 2) sc = {1.0 / double(d)};
  const KernelParams kp = make_kernel(kt, sc, 1.0 / d, 1.0, 3);
  const std::vector<double> K = ref_K(x, n, y, m, d, kp, same, excl);
  char tag[200];
  std::snprintf(tag, sizeof tag, "%s k=%d n=%ld m=%ld d=%ld q=%ld same=%d excl=%d", bf16 ? "bf16" : "tf32", kt,
                long(n), long(m), long(d), long(q), int(same), int(excl));
  for (int upper_mode = 0; upper_mode < (same ? 2 : 1); ++upper_mode) {
    cuda::TcContractParams p;
    p.x = bf16 ? static_cast<const void*>(xb.data()) : x.data();
    p.y = bf16 ? static_cast<const void*>(yb.data()) : y.data();
    p.n = n; p.m = m; p.d = d; p.bf16 = bf16;
    p.xnorms = xn.data(); p.ynorms = yn.data();
    p.weights = w.data(); p.q = q;
    std::vector<double> out(n * q, 0.0), up(n * q, 0.0);
    p.out = out.data(); p.upper = upper_mode ? up.data() : nullptr;
    p.kernel = kp; p.same = same; p.exclude_diagonal = excl;
    if (cuda::contract_tc(p, nullptr) != cudaSuccess) { std::printf("contract_tc error %s\n", tag); ++failures; }
    for (int64_t c = 0; c < q; ++c) {
      if (!upper_mode) {
        for (int64_t i = 0; i < n; ++i) {
          double r = 0, s = 0;
          for (int64_t j = 0; j < m; ++j) { r += K[i * m + j] * w[j * q + c]; s += std::fabs(K[i * m + j] * w[j * q + c]); }
          check(std::string("tc ") + tag, out[i * q + c], r, s, 3e-4);
        }
      } else {
        double got = 0, r = 0, s = 0;
        for (int64_t i = 0; i < n; ++i) got += double(w[i * q + c]) * (out[i * q + c] + 2.0 * up[i * q + c]);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < m; ++j) {
            const double t = double(w[i * q + c]) * K[i * m + j] * w[j * q + c];
            r += t;
            s += std::fabs(t);
          }
        check(std::string("tc upper ") + tag, got, r, s, 3e-4);
      }
    }
  }
}

int main() {
  std::mt19937 rng(3);
  const std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1}, {2, 7, 3}, {70, 33, 40}, {130, 97, 5}};
  for (int kt : {0, 1, 3, 5})
    for (auto& s : sizes)
      for (int mode = 0; mode < 3; ++mode)
        for (bool bf16 : {false, true}) {
          const int64_t q = (kt + mode) % 2 ? 3 : 1;
          run_case(kt, s[0], s[1], s[2], q, mode > 0, mode == 2, bf16, rng);
        }
  // sm_75: the launcher refuses.
  emu_compute_major = 7;
  cuda::TcContractParams p;
  float one = 1.0f;
  double zero = 0.0, out = 0.0;
  p.x = &one; p.y = &one; p.n = p.m = p.d = 1; p.xnorms = p.ynorms = &zero; p.weights = &one; p.out = &out;
  ++checks;
  if (cuda::contract_tc(p, nullptr) != cudaErrorNotSupported) { std::printf("FAIL sm_75 not refused\n"); ++failures; }
  std::printf("checks=%d failures=%d\n", checks, failures);
  return failures != 0;
}
