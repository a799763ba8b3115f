// bf16 for the emulator (tests/test_cuda_emulated.py): 16 bits, round to nearest even.
#pragma once
#include <cstdint>
#include <cstring>
struct __nv_bfloat16 {
  uint16_t bits = 0;
  __nv_bfloat16() = default;
  explicit operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  __nv_bfloat16 h;
  h.bits = uint16_t(u >> 16);
  return h;
}
inline float __bfloat162float(__nv_bfloat16 h) { return float(h); }
