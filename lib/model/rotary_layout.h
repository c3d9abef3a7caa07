#pragma once
// llama.cpp stores the q/k projection rows of each head with rotary pairs interleaved
// (row 2j, 2j+1 = pair j); transformers keeps the two halves apart (rows j and j + D/2).
#include <cstdint>
#include <vector>

namespace anvil::model {

// Reorders the rows of a row-major [n_heads * head_dim, cols] matrix between the layouts.
std::vector<float> permute_rotary_rows(const std::vector<float>& w, int64_t n_heads, int64_t cols, bool to_gguf);

}  // namespace anvil::model
