#include "quant/quant_types.h"

#include <cctype>
#include <cstring>

#include "io/ggml_types.h"
#include "quant/quant_math.h"

namespace anvil::quant {
namespace {

void encode_f32(const float* x, uint8_t* out, int64_t n) { std::memcpy(out, x, n * sizeof(float)); }
void decode_f32(const uint8_t* in, float* y, int64_t n) { std::memcpy(y, in, n * sizeof(float)); }

void encode_f16(const float* x, uint8_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h = to_half(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}
void decode_f16(const uint8_t* in, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    y[i] = from_half(h);
  }
}

void encode_bf16(const float* x, uint8_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h = io::float_to_bf16(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}
void decode_bf16(const uint8_t* in, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, in + 2 * i, 2);
    y[i] = io::bf16_to_float(h);
  }
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// A row of ggml's type table (io/ggml_types.h: name and block geometry) with its codecs.
QuantType row(uint32_t ggml_type, EncodeFn encode, DecodeFn decode) {
  const ggml::TypeInfo* info = ggml::type_info(ggml_type);
  return {info->name, ggml_type, static_cast<int>(info->block_elements), static_cast<int>(info->block_bytes), encode, decode};
}
QuantType row(uint32_t ggml_type, EncodeFn encode, DecodeFn decode, EncodeWeightedFn weighted) {
  QuantType t = row(ggml_type, encode, decode);
  t.encode_weighted = weighted;
  return t;
}
QuantType row(uint32_t ggml_type, EncodeFn encode, DecodeFn decode, EncodeWeightedFn weighted, GridFn grid,
              SetLevelsFn set_levels, int level_min, int level_max) {
  QuantType t = row(ggml_type, encode, decode, weighted);
  t.grid = grid;
  t.set_levels = set_levels;
  t.level_min = level_min;
  t.level_max = level_max;
  return t;
}

}  // namespace

const std::vector<QuantType>& quant_types() {
  static const std::vector<QuantType> table{
      row(0, encode_f32, decode_f32),
      row(1, encode_f16, decode_f16),
      row(30, encode_bf16, decode_bf16),
      row(2, encode_q4_0, decode_q4_0, encode_q4_0_weighted),
      row(3, encode_q4_1, decode_q4_1, encode_q4_1_weighted),
      row(6, encode_q5_0, decode_q5_0, encode_q5_0_weighted),
      row(7, encode_q5_1, decode_q5_1, encode_q5_1_weighted),
      row(8, encode_q8_0, decode_q8_0),
      row(10, encode_q2_K, decode_q2_K, encode_q2_K_weighted),
      row(11, encode_q3_K, decode_q3_K, encode_q3_K_weighted),
      row(12, encode_q4_K, decode_q4_K, encode_q4_K_weighted, grid_q4_K, set_levels_q4_K, 0, 15),
      row(13, encode_q5_K, decode_q5_K, encode_q5_K_weighted, grid_q5_K, set_levels_q5_K, 0, 31),
      row(14, encode_q6_K, decode_q6_K, encode_q6_K_weighted, grid_q6_K, set_levels_q6_K, -32, 31),
      row(20, encode_iq4_nl, decode_iq4_nl, encode_iq4_nl_weighted),
  };
  return table;
}

const QuantType* find_quant_type(std::string_view name) {
  for (const auto& t : quant_types())
    if (iequals(t.name, name)) return &t;
  return nullptr;
}

const QuantType* find_quant_type(uint32_t ggml_type) {
  for (const auto& t : quant_types())
    if (t.ggml_type == ggml_type) return &t;
  return nullptr;
}

}  // namespace anvil::quant
