#include "kernel/row_dot.h"

#include <algorithm>
#include <vector>

#include "quant/quant_types.h"
#include "util/simd_level.h"
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
#if defined(ANVIL_SIMD_X86)
ANVIL_DECLARE_ROW_DOT(avx2)
ANVIL_DECLARE_ROW_DOT(avx512)
#endif

namespace {

using Isa = simd::Level;
simd::Choice g_choice;

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
#if defined(ANVIL_SIMD_X86)
    case Isa::avx512: return avx512::dot_rows_fused(type, w, stride, index, rows, cols, x, sums.data(), y);
    case Isa::avx2: return avx2::dot_rows_fused(type, w, stride, index, rows, cols, x, sums.data(), y);
#endif
    default: return generic::dot_rows_fused(type, w, stride, index, rows, cols, x, sums.data(), y);
  }
}

float decoded_dot(Isa isa, const float* w, const float* x, int64_t n) {
  switch (isa) {
#if defined(ANVIL_SIMD_X86)
    case Isa::avx512: return avx512::dot_decoded(w, x, n);
    case Isa::avx2: return avx2::dot_decoded(w, x, n);
#endif
    default: return generic::dot_decoded(w, x, n);
  }
}

bool decode_fused(Isa isa, uint32_t type, const uint8_t* row, int64_t cols, float* y) {
  switch (isa) {
#if defined(ANVIL_SIMD_X86)
    case Isa::avx512: return avx512::decode_row_fused(type, row, cols, y);
    case Isa::avx2: return avx2::decode_row_fused(type, row, cols, y);
#endif
    default: return generic::decode_row_fused(type, row, cols, y);
  }
}

}  // namespace

void decode_row(uint32_t ggml_type, const uint8_t* row, int64_t cols, float* y) {
  if (decode_fused(g_choice.current(), ggml_type, row, cols, y)) return;
  const quant::QuantType* type = quant::find_quant_type(ggml_type);
  if (!type) fail("row decode", "ggml type " + std::to_string(ggml_type) + " cannot be decoded");
  type->decode(row, y, cols);
}

bool has_fused_dot(uint32_t ggml_type) { return generic::has_fused(ggml_type); }

std::string_view dot_isa() { return simd::name(g_choice.current()); }

void force_dot_isa(std::string_view isa) { g_choice.force(isa, "row dot"); }

void dot_rows(uint32_t ggml_type, const uint8_t* w, size_t row_stride, const int32_t* row_index, int64_t rows,
              int64_t cols, const float* x, float* y) {
  const Isa isa = g_choice.current();
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
