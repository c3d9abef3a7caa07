#pragma once
// One row per ggml quantization type: its GGUF id, block geometry and the encoder/decoder that
// reproduce ggml's reference implementation bit for bit (llama-quantize without an importance
// matrix). Adding a type is one row in quant_types.cpp plus its two functions.
#include <cstdint>
#include <string_view>
#include <vector>

namespace anvil::quant {

using EncodeFn = void (*)(const float* x, uint8_t* out, int64_t n);  // n: multiple of block_elements
using DecodeFn = void (*)(const uint8_t* in, float* y, int64_t n);
// Encoding with an importance matrix: `importance` holds one weight per element of x (the
// per-column mean squared activation, repeated for each row).
using EncodeWeightedFn = void (*)(const float* x, uint8_t* out, int64_t n, const float* importance);
// For error-compensating (GPTQ-style) encoding of one block: each element's representable values
// are a * level + b with level in [level_min, level_max]; set_levels writes chosen levels back.
using GridFn = void (*)(const uint8_t* block, float* a, float* b);
using SetLevelsFn = void (*)(uint8_t* block, const int8_t* levels);

struct QuantType {
  std::string_view name;    // as llama.cpp spells it: "Q4_K", "F16", ...
  uint32_t ggml_type;       // GGUF tensor type id
  int block_elements;
  int block_bytes;
  EncodeFn encode;
  DecodeFn decode;
  EncodeWeightedFn encode_weighted = nullptr;  // types that can use an importance matrix
  GridFn grid = nullptr;                       // types that support GPTQ-style encoding
  SetLevelsFn set_levels = nullptr;
  int level_min = 0, level_max = 0;

  int64_t row_bytes(int64_t n) const { return n / block_elements * block_bytes; }
};

const QuantType* find_quant_type(std::string_view name);  // case-insensitive
const QuantType* find_quant_type(uint32_t ggml_type);
const std::vector<QuantType>& quant_types();

// The encoders and decoders, grouped by family (legacy_quants.cpp, k_quants.cpp).
void encode_q4_0(const float*, uint8_t*, int64_t);   void decode_q4_0(const uint8_t*, float*, int64_t);
void encode_q4_1(const float*, uint8_t*, int64_t);   void decode_q4_1(const uint8_t*, float*, int64_t);
void encode_q5_0(const float*, uint8_t*, int64_t);   void decode_q5_0(const uint8_t*, float*, int64_t);
void encode_q5_1(const float*, uint8_t*, int64_t);   void decode_q5_1(const uint8_t*, float*, int64_t);
void encode_q8_0(const float*, uint8_t*, int64_t);   void decode_q8_0(const uint8_t*, float*, int64_t);
void encode_iq4_nl(const float*, uint8_t*, int64_t); void decode_iq4_nl(const uint8_t*, float*, int64_t);
void encode_q2_K(const float*, uint8_t*, int64_t);   void decode_q2_K(const uint8_t*, float*, int64_t);
void encode_q3_K(const float*, uint8_t*, int64_t);   void decode_q3_K(const uint8_t*, float*, int64_t);
void encode_q4_K(const float*, uint8_t*, int64_t);   void decode_q4_K(const uint8_t*, float*, int64_t);
void encode_q5_K(const float*, uint8_t*, int64_t);   void decode_q5_K(const uint8_t*, float*, int64_t);
void encode_q6_K(const float*, uint8_t*, int64_t);   void decode_q6_K(const uint8_t*, float*, int64_t);
void encode_q4_K_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q5_K_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q6_K_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q2_K_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q3_K_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q4_0_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q4_1_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q5_0_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_q5_1_weighted(const float*, uint8_t*, int64_t, const float*);
void encode_iq4_nl_weighted(const float*, uint8_t*, int64_t, const float*);
void grid_q4_K(const uint8_t*, float*, float*);  void set_levels_q4_K(uint8_t*, const int8_t*);
void grid_q5_K(const uint8_t*, float*, float*);  void set_levels_q5_K(uint8_t*, const int8_t*);
void grid_q6_K(const uint8_t*, float*, float*);  void set_levels_q6_K(uint8_t*, const int8_t*);

}  // namespace anvil::quant
