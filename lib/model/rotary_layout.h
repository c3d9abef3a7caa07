#pragma once
// llama.cpp stores the q/k projection rows of each head with rotary pairs interleaved
// (row 2j, 2j+1 = pair j); transformers keeps the two halves apart (rows j and j + D/2).
#include <cstdint>
#include <vector>

namespace anvil::model {

// The Hugging Face row that GGUF row `gguf_row` of a q/k projection holds.
inline int64_t hf_rotary_row(int64_t gguf_row, int64_t head_dim) {
  const int64_t head = gguf_row / head_dim, within = gguf_row % head_dim;
  return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

// Reorders the rows of a row-major [n_heads * head_dim, cols] matrix between the layouts.
std::vector<float> permute_rotary_rows(const std::vector<float>& w, int64_t n_heads, int64_t cols, bool to_gguf);

}  // namespace anvil::model
