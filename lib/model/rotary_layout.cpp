#include "model/rotary_layout.h"

#include <algorithm>

namespace anvil::model {

std::vector<float> permute_rotary_rows(const std::vector<float>& w, int64_t n_heads, int64_t cols, bool to_gguf) {
  const int64_t rows = static_cast<int64_t>(w.size()) / cols;
  const int64_t head_dim = rows / n_heads;
  std::vector<float> out(w.size());
  for (int64_t gguf_row = 0; gguf_row < rows; ++gguf_row) {
    const int64_t hf_row = hf_rotary_row(gguf_row, head_dim);
    const int64_t src = to_gguf ? hf_row : gguf_row, dst = to_gguf ? gguf_row : hf_row;
    std::copy_n(w.begin() + src * cols, cols, out.begin() + dst * cols);
  }
  return out;
}

}  // namespace anvil::model
