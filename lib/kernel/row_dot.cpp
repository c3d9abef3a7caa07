#include "kernel/row_dot.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <vector>

#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::kernel {

// One build of row_dot_lanes.inc per instruction set; all compute the same sums, wider vectors
// only run more lanes per instruction.
#define ANVIL_DECLARE_ROW_DOT(isa)                                                                              \
  namespace isa {                                                                                               \
  bool has_fused(uint32_t type);                                                                                \
  bool dot_rows_fused(uint32_t type, const uint8_t* w, size_t stride, const int32_t* index, int64_t rows,     \
                      int64_t cols, const float* x, const float* x_sums32, float* y);                           \
  float dot_decoded(const float* w, const float* x, int64_t n);                                                 \
  bool decode_row_fused(uint32_t type, const uint8_t* row, int64_t cols, float* y);                             \
  }
ANVIL_DECLARE_ROW_DOT(generic)
#if defined(ANVIL_ROW_DOT_X86)
ANVIL_DECLARE_ROW_DOT(avx2)
ANVIL_DECLARE_ROW_DOT(avx512)
#endif

namespace {

enum class Isa { generic, avx2, avx512 };
constexpr std::string_view kIsaNames[] = {"generic", "avx2", "avx512"};

Isa cpu_isa() {
#if defined(ANVIL_ROW_DOT_X86)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::generic;
}

// ANVIL_SIMD=avx2|generic runs a narrower build than the CPU has (to measure what an AVX2-only
// or baseline machine gets); a wider one than the CPU has is ignored.
Isa detect_isa() {
  const Isa best = cpu_isa();
  if (const char* env = std::getenv("ANVIL_SIMD"))
    for (int i = 0; i <= static_cast<int>(best); ++i)
      if (kIsaNames[i] == env) return static_cast<Isa>(i);
  return best;
}

std::atomic<int> g_forced{-1};

Isa current_isa() {
  static const Isa detected = detect_isa();
  const int forced = g_forced.load(std::memory_order_relaxed);
  return forced >= 0 ? static_cast<Isa>(forced) : detected;
}

bool fused(Isa isa, uint32_t type, const uint8_t* w, size_t stride, const int32_t* index, int64_t rows, int64_t cols,
           const float* x, float* y) {
  // The k-quants with minimums need x's sums per 32 elements, once per call (not per row).
  std::vector<float> sums;
  if (type == 12 || type == 13) {  // Q4_K, Q5_K
    sums.assign(static_cast<size_t>(cols / 32), 0.f);
    for (int64_t g = 0; g < cols / 32; ++g)
      for (int k = 0; k < 32; ++k) sums[g] += x[g * 32 + k];
  }
  switch (isa) {
#if defined(ANVIL_ROW_DOT_X86)
    case Isa::avx512: return avx512::dot_rows_fused(type, w, stride, index, rows, cols, x, sums.data(), y);
    case Isa::avx2: return avx2::dot_rows_fused(type, w, stride, index, rows, cols, x, sums.data(), y);
#endif
    default: return generic::dot_rows_fused(type, w, stride, index, rows, cols, x, sums.data(), y);
  }
}

float decoded_dot(Isa isa, const float* w, const float* x, int64_t n) {
  switch (isa) {
#if defined(ANVIL_ROW_DOT_X86)
    case Isa::avx512: return avx512::dot_decoded(w, x, n);
    case Isa::avx2: return avx2::dot_decoded(w, x, n);
#endif
    default: return generic::dot_decoded(w, x, n);
  }
}

bool decode_fused(Isa isa, uint32_t type, const uint8_t* row, int64_t cols, float* y) {
  switch (isa) {
#if defined(ANVIL_ROW_DOT_X86)
    case Isa::avx512: return avx512::decode_row_fused(type, row, cols, y);
    case Isa::avx2: return avx2::decode_row_fused(type, row, cols, y);
#endif
    default: return generic::decode_row_fused(type, row, cols, y);
  }
}

}  // namespace

void decode_row(uint32_t ggml_type, const uint8_t* row, int64_t cols, float* y) {
  if (decode_fused(current_isa(), ggml_type, row, cols, y)) return;
  const quant::QuantType* type = quant::find_quant_type(ggml_type);
  if (!type) fail("row decode", "ggml type " + std::to_string(ggml_type) + " cannot be decoded");
  type->decode(row, y, cols);
}

bool has_fused_dot(uint32_t ggml_type) { return generic::has_fused(ggml_type); }

std::string_view dot_isa() { return kIsaNames[static_cast<int>(current_isa())]; }

void force_dot_isa(std::string_view isa) {
  if (isa.empty()) {
    g_forced = -1;
    return;
  }
  for (int i = static_cast<int>(cpu_isa()); i >= 0; --i)
    if (kIsaNames[i] == isa) {
      g_forced = i;
      return;
    }
  fail("row dot", "instruction set '" + std::string(isa) + "' is not available on this CPU");
}

void dot_rows(uint32_t ggml_type, const uint8_t* w, size_t row_stride, const int32_t* row_index, int64_t rows,
              int64_t cols, const float* x, float* y) {
  const Isa isa = current_isa();
  if (fused(isa, ggml_type, w, row_stride, row_index, rows, cols, x, y)) return;
  // Decoded in pieces of whole blocks that stay in L1, then dotted.
  const quant::QuantType* type = quant::find_quant_type(ggml_type);
  if (!type) fail("row dot", "ggml type " + std::to_string(ggml_type) + " cannot be decoded");
  const int64_t piece = std::max<int64_t>(type->block_elements, 1024 / type->block_elements * type->block_elements);
  float buffer[1024 + 256];
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = w + (row_index ? row_index[r] : r) * row_stride;
    float sum = 0;
    for (int64_t k = 0; k < cols; k += piece) {
      const int64_t n = std::min(piece, cols - k);
      type->decode(row + type->row_bytes(k), buffer, n);
      sum += decoded_dot(isa, buffer, x + k, n);
    }
    y[r] = sum;
  }
}

}  // namespace anvil::kernel
