#pragma once
// How llama.cpp's converter changes a tensor's values on the way into GGUF, per family and role,
// written once: the GGUF writer applies it forwards and the GGUF reader backwards.
//  - q/k projections of Llama-style families: each head's rows in the interleaved rotary layout
//    (row 2j, 2j+1 = pair j) where transformers keeps the halves apart (rows j, j + D/2).
//  - Gemma's norms: transformers stores w and computes (1 + w); llama.cpp stores 1 + w.
// Expert stacking and the tensor names are roles' business (tensor_role.h), not values'.
#include <cstdint>
#include <vector>

#include "model/config.h"

namespace anvil::model {

struct GgufTransform {
  int64_t rotary_heads = 0;  // > 0: the rows are `rotary_heads` heads, permuted
  float offset = 0;          // GGUF value = Hugging Face value + offset
  bool identity() const { return rotary_heads == 0 && offset == 0; }
};

GgufTransform gguf_transform(const ModelConfig& config, TensorRole role);

// The Hugging Face row that GGUF row `gguf_row` of a tensor of `rows` rows holds.
int64_t hf_row_of_gguf_row(const GgufTransform& t, int64_t gguf_row, int64_t rows);
// In place, on values already in the target's row order.
void add_gguf_offset(const GgufTransform& t, float* values, int64_t n);      // HF -> GGUF
void remove_gguf_offset(const GgufTransform& t, float* values, int64_t n);   // GGUF -> HF
// GGUF -> Hugging Face for a whole row-major [rows, cols] tensor.
std::vector<float> gguf_to_hf_values(const GgufTransform& t, const std::vector<float>& gguf, int64_t rows, int64_t cols);

}  // namespace anvil::model
