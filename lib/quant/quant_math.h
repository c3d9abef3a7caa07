#pragma once
// Scalar helpers shared by the encoders; each matches ggml's arithmetic exactly.
#include <cstdint>
#include <cstring>

#include "io/dtype.h"

namespace anvil::quant {

// Round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int: adding 1.5 * 2^23 leaves
// the rounded integer in the low mantissa bits).
inline int nearest_int(float x) {
  float v = x + 12582912.f;
  int32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x007fffff) - 0x00400000;
}

// roundf (ties away from zero) for |x| < 2^23, in operations a compiler can vectorize (roundf is
// a library call without SSE4.1): x - trunc(x) is exact, so the tie test is too.
inline int round_half_away(float x) {
  const int t = static_cast<int>(x);
  const float frac = x - static_cast<float>(t);
  return t + (frac >= 0.5f) - (frac <= -0.5f);
}

inline uint16_t to_half(float x) { return io::float_to_f16(x); }
inline float from_half(uint16_t h) { return io::f16_to_float(h); }

// The element of largest magnitude, with its sign; the first one wins a tie (as in ggml, whose
// encoders all scan with a strict '>'). Its absolute value is the group's amax.
inline float signed_absmax(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    float ax = x[i] < 0 ? -x[i] : x[i];
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  return max;
}

// Below this a group is treated as all zeros.
constexpr float kGroupMaxEps = 1e-15f;

}  // namespace anvil::quant
