#include "model/rotary_layout.h"

#include <algorithm>
#include <string>

#include "util/error.h"

namespace anvil::model {

std::vector<float> permute_rotary_rows(const std::vector<float>& w, int64_t n_heads, int64_t cols, bool to_gguf) {
  // Callers check shapes against the config first; this is the last line of defence, since a
  // head_dim of 0 divides by zero and rows not a multiple of it index past the end.
  if (cols <= 0 || n_heads <= 0 || w.size() % static_cast<size_t>(cols) != 0)
    fail("rotary permutation", "a q/k projection whose size does not fit its head layout");
  const int64_t rows = static_cast<int64_t>(w.size()) / cols;
  const int64_t head_dim = rows / n_heads;
  if (head_dim <= 0 || head_dim % 2 != 0 || rows != n_heads * head_dim)
    fail("rotary permutation", "a q/k projection of " + std::to_string(rows) + " rows does not split into " +
                                   std::to_string(n_heads) + " heads of even size");
  std::vector<float> out(w.size());
  for (int64_t gguf_row = 0; gguf_row < rows; ++gguf_row) {
    const int64_t hf_row = hf_rotary_row(gguf_row, head_dim);
    const int64_t src = to_gguf ? hf_row : gguf_row, dst = to_gguf ? gguf_row : hf_row;
    std::copy_n(w.begin() + src * cols, cols, out.begin() + dst * cols);
  }
  return out;
}

}  // namespace anvil::model
