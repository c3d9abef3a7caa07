#include "model/tensor_transforms.h"

#include <algorithm>
#include <string>

#include "util/error.h"

namespace anvil::model {

GgufTransform gguf_transform(const ModelConfig& c, TensorRole role) {
  GgufTransform t;
  if (c.arch->gguf_permute_qk && role == TensorRole::AttnQ) t.rotary_heads = c.num_heads;
  if (c.arch->gguf_permute_qk && role == TensorRole::AttnK) t.rotary_heads = c.num_kv_heads;
  if (c.arch->gguf_norm_plus_one && is_norm(role)) t.offset = 1.0f;
  return t;
}

int64_t hf_row_of_gguf_row(const GgufTransform& t, int64_t gguf_row, int64_t rows) {
  if (t.rotary_heads <= 0) return gguf_row;
  // Callers check shapes against the config first; this is the last line of defence, since a
  // head_dim of 0 divides by zero and rows not a multiple of it index past the end.
  const int64_t head_dim = rows / t.rotary_heads;
  if (head_dim <= 0 || head_dim % 2 != 0 || rows != t.rotary_heads * head_dim)
    fail("rotary permutation", "a q/k projection of " + std::to_string(rows) + " rows does not split into " +
                                   std::to_string(t.rotary_heads) + " heads of even size");
  const int64_t head = gguf_row / head_dim, within = gguf_row % head_dim;
  return head * head_dim + (within % 2) * (head_dim / 2) + within / 2;
}

void add_gguf_offset(const GgufTransform& t, float* v, int64_t n) {
  if (t.offset != 0) std::for_each(v, v + n, [&](float& x) { x += t.offset; });
}

void remove_gguf_offset(const GgufTransform& t, float* v, int64_t n) {
  if (t.offset != 0) std::for_each(v, v + n, [&](float& x) { x -= t.offset; });
}

std::vector<float> gguf_to_hf_values(const GgufTransform& t, const std::vector<float>& gguf, int64_t rows, int64_t cols) {
  if (rows * cols != static_cast<int64_t>(gguf.size())) fail("GGUF tensor", "values do not fill its shape");
  std::vector<float> hf(gguf.size());
  if (t.rotary_heads > 0) {
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(gguf.begin() + r * cols, cols, hf.begin() + hf_row_of_gguf_row(t, r, rows) * cols);
  } else {
    hf = gguf;
  }
  remove_gguf_offset(t, hf.data(), static_cast<int64_t>(hf.size()));
  return hf;
}

}  // namespace anvil::model
