// The k-quants (Q2_K..Q6_K): 256-element super-blocks of 16 or 32-element sub-blocks, each with
// its own scale (and min), the sub-block scales themselves quantized to 4 or 6 bits against one
// fp16 super-scale. Scale searches follow ggml's reference encoders operation for operation,
// because a different float evaluation order changes which level wins a tie.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "io/ggml_blocks.h"
#include "quant/quant_math.h"
#include "quant/quant_types.h"
#include "quant/scale_search.h"

namespace anvil::quant {
// ggml's block structs and block lengths (kQK, kQK_K).
using namespace anvil::ggml;
namespace {

template <typename Block>
Block* blocks(uint8_t* p) { return reinterpret_cast<Block*>(p); }
template <typename Block>
const Block* blocks(const uint8_t* p) { return reinterpret_cast<const Block*>(p); }

// Q3_K's sub-block search: start at nmax/max, then move single elements to a better level while
// the weighted (x^2) fit improves, up to 5 sweeps (ggml's make_q3_quants with do_rmse).
float q3_scale_search(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n), amax = std::fabs(max);
  if (amax < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = std::max(-nmax, std::min(nmax - 1, nearest_int(iscale * x[i])));
    L[i] = static_cast<int8_t>(l);
    float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        int new_l = std::max(-nmax, std::min(nmax - 1, nearest_int(x[i] * sl2 / slx)));
        if (new_l != L[i]) {
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Q2_K/Q3_K low bits: four 2-bit levels per byte, element j + 32k in bits 2k of byte j (per 128).
template <typename Level>
void pack_2bit(const Level* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// The 12-byte packing of eight 6-bit scales and eight 6-bit mins used by Q4_K and Q5_K.
void pack_scale_min_k4(uint8_t* q, int j, uint8_t ls, uint8_t lm) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    q[j] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Non-negative values to levels 0..nmax of one scale, fitted by weighted least squares: 9 scales
// tried around nmax / max, then single levels moved while the fit improves (up to 5 sweeps).
// ggml's make_qp_quants, which quantizes the k-quants' sub-block scales under an imatrix.
float weighted_positive_scale(int n, int nmax, const float* x, uint8_t* L, const float* w) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    std::fill(L, L + n, 0);
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best_mse += w[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max, scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += w[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sumlx += w[i] * x[i] * l;
    suml2 += w[i] * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      float slx = sumlx - w[i] * x[i] * L[i], sl2 = suml2 - w[i] * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int new_l = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (new_l != L[i]) {
          slx += w[i] * x[i] * new_l;
          sl2 += w[i] * new_l * new_l;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Quantizes the eight sub-block scales and mins to 6 bits against the block's fp16 d and dmin,
// then re-picks every level against the quantized scales. Without an importance matrix the 6-bit
// scales are rounded against the largest; with one (sub_weights: each sub-block's summed error
// weights) they are fitted by weighted least squares, as ggml's quantize_row_q4_K_impl does.
template <typename Block>
void finish_scale_min_block(const float* x, Block& y, uint8_t* L, const float* scales, const float* mins, int nmax,
                            void (*set_levels)(uint8_t*, const int8_t*), const float* sub_weights) {
  std::memset(y.scales, 0, sizeof y.scales);
  if (sub_weights) {
    uint8_t Ls[8], Lm[8];
    const float d_block = weighted_positive_scale(8, 63, scales, Ls, sub_weights);
    const float m_block = weighted_positive_scale(8, 63, mins, Lm, sub_weights);
    for (int j = 0; j < 8; ++j) pack_scale_min_k4(y.scales, j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]));
    y.d = to_half(d_block);
    y.dmin = to_half(m_block);
  } else {
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; ++j) {
      uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
      uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
      pack_scale_min_k4(y.scales, j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm));
    }
    y.d = to_half(max_scale / 63.f);
    y.dmin = to_half(max_min / 63.f);
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    unpack_scale_min_k4(j, y.scales, &sc, &m);
    const float d = from_half(y.d) * sc;
    if (!d) continue;
    const float dm = from_half(y.dmin) * m;
    for (int ii = 0; ii < 32; ++ii)
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int((x[32 * j + ii] + dm) / d))));
  }
  set_levels(reinterpret_cast<uint8_t*>(&y), reinterpret_cast<const int8_t*>(L));
}

// Shared by Q4_K (nmax 15) and Q5_K (nmax 31): eight 32-element sub-blocks with scale and min,
// both quantized to 6 bits. Returns the final levels in L. With an importance matrix (per-column
// mean squared activations), each element's error is weighted by importance * sqrt(sigma2 + x^2)
// and a finer grid of candidate scales is searched, as llama.cpp does with --imatrix.
// Two super-blocks at a time: their 16 sub-blocks fill one AVX-512 search (two AVX2, four SSE2).
template <typename Block>
void encode_scale_min_blocks(const float* x, Block* y, int64_t nblocks, int nmax, float rmin, int nstep,
                             const float* importance, void (*set_levels)(uint8_t*, const int8_t*)) {
  constexpr int kPerCall = 2;
  for (int64_t i0 = 0; i0 < nblocks; i0 += kPerCall) {
    const int nb = static_cast<int>(std::min<int64_t>(kPerCall, nblocks - i0));
    const float* xb = x + i0 * kQK_K;
    float weights[kPerCall * kQK_K], scales[kPerCall * 8], mins[kPerCall * 8], sub_weights[kPerCall * 8];
    uint8_t L[kPerCall * kQK_K];
    for (int b = 0; b < nb; ++b) {
      const float* xs = xb + b * kQK_K;
      float sigma2 = 0;
      if (importance) {
        for (int l = 0; l < kQK_K; ++l) sigma2 += xs[l] * xs[l];
        sigma2 = 2 * sigma2 / kQK_K;
      }
      for (int j = 0; j < 8; ++j) {
        const float* xj = xs + 32 * j;
        float* wj = weights + b * kQK_K + 32 * j;
        if (importance) {
          const float* imp = importance + (i0 + b) * kQK_K + 32 * j;
          for (int l = 0; l < 32; ++l) wj[l] = imp[l] * std::sqrt(sigma2 + xj[l] * xj[l]);
          float sum_w = 0;
          for (int l = 0; l < 32; ++l) sum_w += wj[l];
          sub_weights[8 * b + j] = sum_w;
        } else {
          float sum_x2 = 0;
          for (int l = 0; l < 32; ++l) sum_x2 += xj[l] * xj[l];
          float av_x = std::sqrt(sum_x2 / 32);
          for (int l = 0; l < 32; ++l) wj[l] = av_x + std::fabs(xj[l]);
        }
      }
    }
    if (importance) scale_min_search(8 * nb, 32, nmax, xb, weights, L, scales, mins, -0.9f, 0.05f, 36, false);
    else scale_min_search(8 * nb, 32, nmax, xb, weights, L, scales, mins, rmin, 0.1f, nstep, false);
    for (int b = 0; b < nb; ++b)
      finish_scale_min_block(xb + b * kQK_K, y[i0 + b], L + b * kQK_K, scales + 8 * b, mins + 8 * b, nmax, set_levels,
                             importance ? sub_weights + 8 * b : nullptr);
  }
}

// Q4_K/Q5_K: element values are d * scale_j * level - dmin * min_j per 32-element sub-block j.
template <typename Block>
void scale_min_grid(const uint8_t* block, float* a, float* b) {
  const auto& y = *reinterpret_cast<const Block*>(block);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    unpack_scale_min_k4(j, y.scales, &sc, &m);
    for (int l = 0; l < 32; ++l) a[32 * j + l] = from_half(y.d) * sc, b[32 * j + l] = -from_half(y.dmin) * m;
  }
}

}  // namespace

namespace {

// Q2_K once its 4-bit scales and mins and fp16 d/dmin are set: every level re-picked against them, packed.
void finish_q2_K_block(const float* x, BlockQ2_K& y, uint8_t* L) {
  for (int j = 0; j < 16; ++j) {
    const float d = from_half(y.d) * (y.scales[j] & 0xF);
    if (!d) continue;
    const float dm = from_half(y.dmin) * (y.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, nearest_int((x[16 * j + ii] + dm) / d))));
  }
  pack_2bit(L, y.qs);
}

// Q3_K once its 6-bit scales and fp16 d are set: levels re-picked, high bits to hmask, packed.
void finish_q3_K_block(const float* x, BlockQ3_K& y, int8_t* L) {
  for (int j = 0; j < 16; ++j) {
    int8_t sc = static_cast<int8_t>(j < 8 ? y.scales[j] & 0xF : y.scales[j - 8] >> 4);
    sc = static_cast<int8_t>((sc | (((y.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
    float d = from_half(y.d) * sc;
    if (!d) continue;
    for (int ii = 0; ii < 16; ++ii)
      L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d))) + 4);
  }
  std::memset(y.hmask, 0, sizeof y.hmask);
  // The high bit of element j goes to bit j / 32 of hmask[j % 32].
  for (int j = 0; j < kQK_K; ++j)
    if (L[j] > 3) {
      y.hmask[j % 32] |= static_cast<uint8_t>(1 << (j / 32));
      L[j] = static_cast<int8_t>(L[j] - 4);
    }
  pack_2bit(L, y.qs);
}

// Q3_K's packing of sixteen 6-bit scale levels (0..63): low nibbles in bytes 0-7, two high bits
// each in bytes 8-11.
void pack_q3_K_scale(uint8_t* scales, int j, int l) {
  if (j < 8) scales[j] = static_cast<uint8_t>(l & 0xF);
  else scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
  scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
}

// The k-quants' error weights under an importance matrix: importance * sqrt(sigma2 + x^2) per
// element of one super-block, with each sub-block's sum (ggml's *_impl encoders).
void super_block_weights(const float* x, const float* importance, float sigma2_factor, int sub, float* w, float* sub_sum) {
  float sum_x2 = 0;
  for (int l = 0; l < kQK_K; ++l) sum_x2 += x[l] * x[l];
  const float sigma2 = sigma2_factor * sum_x2 / kQK_K;
  for (int j = 0; j < kQK_K / sub; ++j) {
    float s = 0;
    for (int l = 0; l < sub; ++l) {
      w[sub * j + l] = importance[sub * j + l] * std::sqrt(sigma2 + x[sub * j + l] * x[sub * j + l]);
      s += w[sub * j + l];
    }
    sub_sum[j] = s;
  }
}

}  // namespace

void encode_q2_K_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  if (!importance) return encode_q2_K(x, out, n);
  auto* y = blocks<BlockQ2_K>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K], Ls[16], Lm[16];
    float weights[kQK_K], sw[16], mins[16], scales[16];
    super_block_weights(x, importance + i * kQK_K, 1.f, 16, weights, sw);  // sigma2: the mean square, not twice
    scale_min_search(16, 16, 3, x, weights, L, scales, mins, -0.9f, 0.05f, 36, false);
    y[i].d = to_half(weighted_positive_scale(16, 15, scales, Ls, sw));
    y[i].dmin = to_half(weighted_positive_scale(16, 15, mins, Lm, sw));
    for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    finish_q2_K_block(x, y[i], L);
  }
}

void encode_q3_K_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  if (!importance) return encode_q3_K(x, out, n);
  auto* y = blocks<BlockQ3_K>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    int8_t L[kQK_K], Ls[16];
    float weights[kQK_K], sw[16], scales[16], d_block;
    super_block_weights(x, importance + i * kQK_K, 2.f, 16, weights, sw);
    symmetric_scale_search(16, 16, 4, x, weights, L, scales);
    symmetric_scale_search(1, 16, 32, scales, sw, Ls, &d_block);  // the scales themselves, weighted by sw
    std::memset(y[i].scales, 0, 12);
    for (int j = 0; j < 16; ++j) pack_q3_K_scale(y[i].scales, j, Ls[j]);
    y[i].d = to_half(d_block);
    finish_q3_K_block(x, y[i], L);
  }
}

void encode_q2_K(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ2_K>(out);
  const float q4scale = 15.f;
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    uint8_t L[kQK_K];
    float weights[kQK_K], mins[16], scales[16];
    float max_scale = 0, max_min = 0;
    for (int l = 0; l < kQK_K; ++l) weights[l] = std::fabs(x[l]);
    scale_min_search(16, 16, 3, x, weights, L, scales, mins, -0.5f, 0.1f, 15, true);
    for (int j = 0; j < 16; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      float iscale = q4scale / max_scale;
      for (int j = 0; j < 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      y[i].d = to_half(max_scale / q4scale);
    } else {
      std::memset(y[i].scales, 0, 16);
      y[i].d = to_half(0.f);
    }
    if (max_min > 0) {
      float iscale = q4scale / max_min;
      for (int j = 0; j < 16; ++j) y[i].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
      y[i].dmin = to_half(max_min / q4scale);
    } else {
      y[i].dmin = to_half(0.f);
    }
    finish_q2_K_block(x, y[i], L);
  }
}

void decode_q2_K(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ2_K>(in);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = from_half(b[i].d), min = from_half(b[i].dmin);
    const uint8_t* q = b[i].qs;
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32)
      for (int shift = 0; shift < 8; shift += 2)
        for (int part = 0; part < 2; ++part) {
          uint8_t sc = b[i].scales[is++];
          float dl = d * (sc & 0xF), ml = min * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l + 16 * part] >> shift) & 3) - ml;
        }
  }
}

void encode_q3_K(const float* x, uint8_t* out, int64_t n) {
  auto* y = blocks<BlockQ3_K>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    int8_t L[kQK_K];
    float scales[16];
    for (int j = 0; j < 16; ++j) scales[j] = q3_scale_search(16, 4, x + 16 * j, L + 16 * j);
    const float max_scale = signed_absmax(scales, 16);
    std::memset(y[i].scales, 0, 12);
    if (max_scale) {
      float iscale = -32.f / max_scale;
      for (int j = 0; j < 16; ++j)
        pack_q3_K_scale(y[i].scales, j, std::max(-32, std::min(31, nearest_int(iscale * scales[j]))) + 32);
      y[i].d = to_half(1 / iscale);
    } else {
      y[i].d = to_half(0.f);
    }
    finish_q3_K_block(x, y[i], L);
  }
}

void decode_q3_K(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ3_K>(in);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d_all = from_half(b[i].d);
    // Sixteen 6-bit scales: low nibbles in bytes 0..7, high 2-bit pairs in bytes 8..11.
    int8_t scales[16];
    for (int j = 0; j < 16; ++j) {
      int low = j < 8 ? b[i].scales[j] & 0xF : b[i].scales[j - 8] >> 4;
      int high = (b[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3;
      scales[j] = static_cast<int8_t>(low | (high << 4));
    }
    const uint8_t* q = b[i].qs;
    const uint8_t* hm = b[i].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32)
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1))
        for (int part = 0; part < 2; ++part) {
          float dl = d_all * (scales[is++] - 32);
          for (int l = 0; l < 16; ++l) {
            int idx = l + 16 * part;
            *y++ = dl * (static_cast<int8_t>((q[idx] >> shift) & 3) - ((hm[idx] & m) ? 0 : 4));
          }
        }
  }
}

void encode_q4_K(const float* x, uint8_t* out, int64_t n) { encode_q4_K_weighted(x, out, n, nullptr); }

void encode_q4_K_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  encode_scale_min_blocks(x, blocks<BlockQ4_K>(out), n / kQK_K, 15, -1.f, 20, importance, set_levels_q4_K);
}

void set_levels_q4_K(uint8_t* block, const int8_t* L) {
  uint8_t* q = reinterpret_cast<BlockQ4_K*>(block)->qs;
  for (int j = 0; j < kQK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

void grid_q4_K(const uint8_t* block, float* a, float* b) { scale_min_grid<BlockQ4_K>(block, a, b); }

void decode_q4_K(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ4_K>(in);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = from_half(b[i].d), min = from_half(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      unpack_scale_min_k4(is, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      unpack_scale_min_k4(is + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

void encode_q5_K(const float* x, uint8_t* out, int64_t n) { encode_q5_K_weighted(x, out, n, nullptr); }

void encode_q5_K_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  encode_scale_min_blocks(x, blocks<BlockQ5_K>(out), n / kQK_K, 31, -0.5f, 15, importance, set_levels_q5_K);
}

void set_levels_q5_K(uint8_t* block, const int8_t* L) {
  auto& y = *reinterpret_cast<BlockQ5_K*>(block);
  std::memset(y.qh, 0, sizeof y.qh);
  uint8_t* ql = y.qs;
  uint8_t m1 = 1, m2 = 2;
  for (int n0 = 0; n0 < kQK_K; n0 += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n0 + j], l2 = L[n0 + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        y.qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        y.qh[j] |= m2;
      }
      ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
  }
}

void grid_q5_K(const uint8_t* block, float* a, float* b) { scale_min_grid<BlockQ5_K>(block, a, b); }

void decode_q5_K(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ5_K>(in);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = from_half(b[i].d), min = from_half(b[i].dmin);
    const uint8_t* ql = b[i].qs;
    const uint8_t* qh = b[i].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32) {
      uint8_t sc, m;
      unpack_scale_min_k4(is, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      unpack_scale_min_k4(is + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void encode_q6_K(const float* x, uint8_t* out, int64_t n) { encode_q6_K_weighted(x, out, n, nullptr); }

void encode_q6_K_weighted(const float* x, uint8_t* out, int64_t n, const float* importance) {
  auto* y = blocks<BlockQ6_K>(out);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    int8_t L[kQK_K];
    float scales[16], weights[kQK_K];
    // Q6_K takes the importance itself as the error weight (the sigma2 factor of the other types
    // is commented out in ggml's quantize_row_q6_K_impl).
    if (importance) std::copy(importance + i * kQK_K, importance + (i + 1) * kQK_K, weights);
    symmetric_scale_search(16, 16, 32, x, importance ? weights : nullptr, L, scales);
    const float max_scale = signed_absmax(scales, 16), max_abs_scale = std::fabs(max_scale);
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    float iscale = -128.f / max_scale;
    y[i].d = to_half(1 / iscale);
    for (int ib = 0; ib < 16; ++ib) y[i].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < 16; ++j) {
      float d = from_half(y[i].d) * y[i].scales[j];
      if (!d) continue;
      for (int ii = 0; ii < 16; ++ii)
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d))) + 32);
    }
    for (int l = 0; l < kQK_K; ++l) L[l] = static_cast<int8_t>(L[l] - 32);
    set_levels_q6_K(reinterpret_cast<uint8_t*>(&y[i]), L);
  }
}

// Q6_K levels are signed (-32..31); stored offset by 32 in 4 + 2 bits.
void set_levels_q6_K(uint8_t* block, const int8_t* Ls) {
  auto& y = *reinterpret_cast<BlockQ6_K*>(block);
  uint8_t L[kQK_K];
  for (int l = 0; l < kQK_K; ++l) L[l] = static_cast<uint8_t>(Ls[l] + 32);
  uint8_t* ql = y.ql;
  uint8_t* qh = y.qh;
  for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32)
    for (int l = 0; l < 32; ++l) {
      const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                   ((L[j + l + 96] >> 4) << 6));
    }
}

void grid_q6_K(const uint8_t* block, float* a, float* b) {
  const auto& y = *reinterpret_cast<const BlockQ6_K*>(block);
  for (int l = 0; l < kQK_K; ++l) a[l] = from_half(y.d) * y.scales[l / 16], b[l] = 0;
}

void decode_q6_K(const uint8_t* in, float* y, int64_t n) {
  const auto* b = blocks<BlockQ6_K>(in);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = from_half(b[i].d);
    const uint8_t* ql = b[i].ql;
    const uint8_t* qh = b[i].qh;
    const int8_t* sc = b[i].scales;
    for (int n0 = 0; n0 < kQK_K; n0 += 128, y += 128, ql += 64, qh += 32, sc += 8)
      for (int l = 0; l < 32; ++l) {
        int is = l / 16;
        const int8_t q1 = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        const int8_t q2 = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        const int8_t q3 = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        const int8_t q4 = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
  }
}

}  // namespace anvil::quant
