#include "quant/quant_types.h"

#include <cctype>
#include <cstring>

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

}  // namespace

const std::vector<QuantType>& quant_types() {
  static const std::vector<QuantType> table{
      {"F32", 0, 1, 4, encode_f32, decode_f32},
      {"F16", 1, 1, 2, encode_f16, decode_f16},
      {"BF16", 30, 1, 2, encode_bf16, decode_bf16},
      {"Q4_0", 2, 32, 18, encode_q4_0, decode_q4_0},
      {"Q4_1", 3, 32, 20, encode_q4_1, decode_q4_1},
      {"Q5_0", 6, 32, 22, encode_q5_0, decode_q5_0},
      {"Q5_1", 7, 32, 24, encode_q5_1, decode_q5_1},
      {"Q8_0", 8, 32, 34, encode_q8_0, decode_q8_0},
      {"Q2_K", 10, 256, 84, encode_q2_K, decode_q2_K},
      {"Q3_K", 11, 256, 110, encode_q3_K, decode_q3_K},
      {"Q4_K", 12, 256, 144, encode_q4_K, decode_q4_K, encode_q4_K_weighted, grid_q4_K, set_levels_q4_K, 0, 15},
      {"Q5_K", 13, 256, 176, encode_q5_K, decode_q5_K, encode_q5_K_weighted, grid_q5_K, set_levels_q5_K, 0, 31},
      {"Q6_K", 14, 256, 210, encode_q6_K, decode_q6_K, encode_q6_K_weighted, grid_q6_K, set_levels_q6_K, -32, 31},
      {"IQ4_NL", 20, 32, 18, encode_iq4_nl, decode_iq4_nl},
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
