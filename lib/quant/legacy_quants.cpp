// The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the non-linear IQ4_NL, following
// ggml's reference encoders: symmetric types scale by the signed value of largest magnitude,
// asymmetric ones by (max - min); nibbles hold element j in the low and j + 16 in the high half.
#include <algorithm>
#include <cfloat>
#include <cmath>

#include <vector>

#include "io/ggml_blocks.h"
#include "quant/quant_math.h"
#include "quant/quant_types.h"
#include "quant/scale_search.h"

namespace anvil::quant {
// ggml's block structs and block lengths (kQK, kQK_K).
using namespace anvil::ggml;
namespace {

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
}

template <typename Block>
Block* blocks(uint8_t* p) { return reinterpret_cast<Block*>(p); }
template <typename Block>
const Block* blocks(const uint8_t* p) { return reinterpret_cast<const Block*>(p); }

const int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Index of the table value nearest to x (ties to the lower one), as ggml's best_index_int8.
int nearest_value_index(const int8_t* values, int n, float x) {
  if (x <= values[0]) return 0;
  if (x >= values[n - 1]) return n - 1;
  int lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (x < values[mid]) hi = mid;
    else lo = mid;
  }
  return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
}

}  // namespace

void encode_q4_0(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ4_0>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    for (int j = 0; j < kQK / 2; ++j) {
      uint8_t lo = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f))));
      uint8_t hi = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f))));
      y[i].qs[j] = lo | static_cast<uint8_t>(hi << 4);
    }
  }
}

void decode_q4_0(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ4_0>(in);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = from_half(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
      y[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void encode_q4_1(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ4_1>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 15;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    y[i].m = to_half(min);
    for (int j = 0; j < kQK / 2; ++j) {
      uint8_t lo = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f))));
      uint8_t hi = static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f))));
      y[i].qs[j] = lo | static_cast<uint8_t>(hi << 4);
    }
  }
}

void decode_q4_1(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ4_1>(in);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = from_half(b[i].d), m = from_half(b[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = (b[i].qs[j] & 0x0F) * d + m;
      y[j + 16] = (b[i].qs[j] >> 4) * d + m;
    }
  }
}

namespace {

// Q5 types: low nibbles as in Q4, the fifth bits gathered in a little-endian 32-bit mask.
template <typename Block>
void pack_q5(Block& b, const uint8_t* q) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    b.qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
    qh |= static_cast<uint32_t>((q[j] & 0x10u) >> 4) << j;
    qh |= static_cast<uint32_t>((q[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(b.qh, &qh, 4);
}

template <typename Block>
void unpack_q5(const Block& b, int* q) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = (b.qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
    q[j + 16] = (b.qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
  }
}

}  // namespace

void encode_q5_0(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ5_0>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j)
      q[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
    pack_q5(y[i], q);
  }
}

void decode_q5_0(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ5_0>(in);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = from_half(b[i].d);
    int q[kQK];
    unpack_q5(b[i], q);
    for (int j = 0; j < kQK; ++j) y[j] = (q[j] - 16) * d;
  }
}

void encode_q5_1(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ5_1>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float min, max;
    min_max(x, kQK, min, max);
    const float d = (max - min) / 31;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    y[i].m = to_half(min);
    uint8_t q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
    pack_q5(y[i], q);
  }
}

void decode_q5_1(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ5_1>(in);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = from_half(b[i].d), m = from_half(b[i].m);
    int q[kQK];
    unpack_q5(b[i], q);
    for (int j = 0; j < kQK; ++j) y[j] = q[j] * d + m;
  }
}

void encode_q8_0(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ8_0>(out);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    // Eight running maxima, so that the compiler can vectorize; the maximum does not depend on
    // the order (for inputs without NaN).
    float lane_max[8] = {};
    for (int j = 0; j < kQK; j += 8)
      for (int k = 0; k < 8; ++k) lane_max[k] = std::max(lane_max[k], std::fabs(x[j + k]));
    float amax = 0;
    for (float m : lane_max) amax = std::max(amax, m);
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    y[i].d = to_half(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(round_half_away(x[j] * id));
  }
}

void decode_q8_0(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ8_0>(in);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = from_half(b[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = b[i].qs[j] * d;
  }
}

namespace {

// Weighted least-squares scale for one block: the first guess maps the largest element to the
// lowest level, then 15 nearby starting scales are tried.
float refine_iq4_nl_scale(const float* x, const float* weight, float max, const int8_t* values, int ntry) {
    float d = -max / values[0];
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < kQK; ++j) {
      float q = values[nearest_value_index(values, 16, id * x[j])];
      sumqx += weight[j] * q * x[j];
      sumq2 += weight[j] * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = (itry + values[0]) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < kQK; ++j) {
        float q = values[nearest_value_index(values, 16, id * x[j])];
        sumqx += weight[j] * q * x[j];
        sumq2 += weight[j] * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    return d;
}

}  // namespace

// IQ4_NL: 16 non-uniform levels; the block scale is refined by a weighted least-squares search
// over 15 candidate scales (ggml's quantize_iq4_nl with ntry = 7, weights x^2).
void encode_iq4_nl(const float* x, uint8_t* out, int64_t n) { encode_iq4_nl_weighted(x, out, n, nullptr); }

// With an importance matrix the error weights are importance * sqrt(sigma2 + x^2), sigma2 twice
// the block's mean square (ggml's quantize_row_iq4_nl_impl with a 32-element super-block).
void encode_iq4_nl_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  auto* y = blocks<BlockIQ4_NL>(out);
  const int8_t* values = kIQ4NLValues;
  constexpr int ntry = 7;
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    uint8_t L[kQK];
    float weight[kQK];
    if (importance) {
      float sigma2 = 0;
      for (int j = 0; j < kQK; ++j) sigma2 += x[j] * x[j];
      sigma2 *= 2.f / kQK;
      for (int j = 0; j < kQK; ++j) weight[j] = importance[i * kQK + j] * std::sqrt(sigma2 + x[j] * x[j]);
    } else {
      for (int j = 0; j < kQK; ++j) weight[j] = x[j] * x[j];
    }
    const float max = signed_absmax(x, kQK), amax = std::fabs(max);
    // An all-zero block keeps d = 0; its levels still come from the final pass (index 8, value 1).
    float d = 0;
    if (amax >= kGroupMaxEps) d = refine_iq4_nl_scale(x, weight, max, values, ntry);
    y[i].d = to_half(d);
    const float inv = d ? 1 / d : 0;
    for (int j = 0; j < kQK; ++j) L[j] = static_cast<uint8_t>(nearest_value_index(values, 16, inv * x[j]));
    for (int j = 0; j < 16; ++j) y[i].qs[j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
  }
}


void decode_iq4_nl(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockIQ4_NL>(in);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = from_half(b[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = d * kIQ4NLValues[b[i].qs[j] & 0xf];
      y[j + 16] = d * kIQ4NLValues[b[i].qs[j] >> 4];
    }
  }
}

// The importance-weighted 32-element encoders (ggml's quantize_row_q4_0_impl ... q5_1_impl):
// per element, weight = importance * sqrt(sigma2 + x^2) with sigma2 the row's mean square; the
// symmetric types then search 18 scales around nmax / max (make_qx_quants), the asymmetric ones
// fit scale and min over 37 level assignments (make_qkx3_quants). One search call per row.
namespace {

std::vector<float> row_error_weights(const float* x, int64_t n, const float* importance) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / static_cast<float>(n);
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) w[j] = importance[j] * std::sqrt(sigma2 + x[j] * x[j]);
  return w;
}

// Symmetric: levels + nmax in L (0 .. 2 nmax - 1), one scale per block.
template <typename Block, int kNmax>
void encode_symmetric_weighted(const float* x, uint8_t* out, int64_t n, const float* importance,
                               void (*pack)(Block&, const uint8_t*)) {
  auto* y = blocks<Block>(out);
  const int nb = static_cast<int>(n / kQK);
  const auto w = row_error_weights(x, n, importance);
  std::vector<int8_t> L(static_cast<size_t>(n));
  std::vector<float> scales(static_cast<size_t>(nb));
  symmetric_scale_search(nb, kQK, kNmax, x, w.data(), L.data(), scales.data());
  for (int i = 0; i < nb; ++i) {
    y[i].d = to_half(scales[i]);
    pack(y[i], reinterpret_cast<const uint8_t*>(L.data() + i * kQK));
  }
}

// Asymmetric: levels 0 .. nmax, a scale and a (non-positive) min per block.
template <typename Block, int kNmax>
void encode_scale_min_weighted(const float* x, uint8_t* out, int64_t n, const float* importance,
                               void (*pack)(Block&, const uint8_t*)) {
  auto* y = blocks<Block>(out);
  const int nb = static_cast<int>(n / kQK);
  const auto w = row_error_weights(x, n, importance);
  std::vector<uint8_t> L(static_cast<size_t>(n));
  std::vector<float> scales(static_cast<size_t>(nb)), neg_mins(static_cast<size_t>(nb));
  scale_min_search(nb, kQK, kNmax, x, w.data(), L.data(), scales.data(), neg_mins.data(), -0.9f, 0.05f, 36, false);
  for (int i = 0; i < nb; ++i) {
    y[i].d = to_half(scales[i]);
    y[i].m = to_half(-neg_mins[i]);
    pack(y[i], L.data() + i * kQK);
  }
}

template <typename Block>
void pack_q4(Block& b, const uint8_t* q) {
  for (int j = 0; j < kQK / 2; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

}  // namespace

void encode_q4_0_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  if (!importance) return encode_q4_0(x, out, n);
  encode_symmetric_weighted<BlockQ4_0, 8>(x, out, n, importance, pack_q4<BlockQ4_0>);
}
void encode_q5_0_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  if (!importance) return encode_q5_0(x, out, n);
  encode_symmetric_weighted<BlockQ5_0, 16>(x, out, n, importance, pack_q5<BlockQ5_0>);
}
void encode_q4_1_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  if (!importance) return encode_q4_1(x, out, n);
  encode_scale_min_weighted<BlockQ4_1, 15>(x, out, n, importance, pack_q4<BlockQ4_1>);
}
void encode_q5_1_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  if (!importance) return encode_q5_1(x, out, n);
  encode_scale_min_weighted<BlockQ5_1, 31>(x, out, n, importance, pack_q5<BlockQ5_1>);
}

}  // namespace anvil::quant
