#include "model/rotary_layout.h"

#include <algorithm>

namespace anvil::model {

std::vector<float> permute_rotary_rows(const std::vector<float>& w, int64_t n_heads, int64_t cols, bool to_gguf) {
  const int64_t rows = static_cast<int64_t>(w.size()) / cols;
  const int64_t head_dim = rows / n_heads, half = head_dim / 2;
  std::vector<float> out(w.size());
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t j = 0; j < half; ++j)
      for (int64_t i = 0; i < 2; ++i) {
        int64_t hf_row = h * head_dim + i * half + j;   // halves apart
        int64_t gguf_row = h * head_dim + j * 2 + i;    // pairs adjacent
        int64_t src = to_gguf ? hf_row : gguf_row, dst = to_gguf ? gguf_row : hf_row;
        std::copy_n(w.begin() + src * cols, cols, out.begin() + dst * cols);
      }
  return out;
}

}  // namespace anvil::model
