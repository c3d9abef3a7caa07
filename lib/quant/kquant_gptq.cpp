#include "quant/kquant_gptq.h"

#include "quant/calibration.h"
#include "quant/gptq.h"
#include "util/error.h"

namespace anvil::quant {

bool supports_gptq(const QuantType& type) { return type.grid && type.set_levels; }

std::vector<uint8_t> encode_gptq(const QuantType& type, const float* w, int64_t rows, int64_t cols,
                                 const at::Tensor& hessian, const float* importance, double damp) {
  if (!supports_gptq(type)) fail("gptq", std::string(type.name) + " has no GPTQ encoder");
  const int64_t B = type.block_elements, row_bytes = type.row_bytes(cols);
  if (cols % B) fail("gptq", "row length is not a multiple of the block");
  std::vector<uint8_t> bytes(static_cast<size_t>(rows * row_bytes));
  // Act-order visits columns in any order, so the grid and levels of every block are kept.
  at::Tensor a = at::empty({rows, cols}), b = at::empty({rows, cols});
  at::Tensor levels = at::empty({rows, cols}, at::kChar);
  auto block_bytes = [&](int64_t r, int64_t blk) { return bytes.data() + r * row_bytes + blk * type.block_bytes; };

  ColumnQuantizer quantizer;
  quantizer.group_width = B;
  quantizer.act_order = true;
  quantizer.start_group = [&](int64_t col0, const at::Tensor& columns) {
    const int64_t block = col0 / B;
    const float* imp = importance ? importance + col0 : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = columns[r].data_ptr<float>();
      if (imp && type.encode_weighted) type.encode_weighted(x, block_bytes(r, block), B, imp);
      else type.encode(x, block_bytes(r, block), B);
      type.grid(block_bytes(r, block), a[r].data_ptr<float>() + col0, b[r].data_ptr<float>() + col0);
    }
  };
  quantizer.quantize_column = [&](int64_t col, const at::Tensor& x) {
    const int64_t k = col;
    at::Tensor ak = a.select(1, k), bk = b.select(1, k);
    at::Tensor q = at::where(ak != 0, at::round((x - bk) / ak), at::zeros_like(x))
                       .clamp_(type.level_min, type.level_max);
    // Where a sub-block's scale is 0 every level decodes to b, so level 0 is as good as any.
    levels.select(1, k).copy_(q);
    return ak * q + bk;
  };
  at::Tensor weight = at::from_blob(const_cast<float*>(w), {rows, cols}, at::kFloat);
  gptq(weight, hessian, damp, quantizer);
  at::Tensor block_levels = at::empty({B}, at::kChar);  // the chosen levels into every block
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t blk = 0; blk < cols / B; ++blk) {
      block_levels.copy_(levels[r].narrow(0, blk * B, B));
      type.set_levels(block_bytes(r, blk), block_levels.data_ptr<int8_t>());
    }
  return bytes;
}

TensorEncoder gptq_tensor_encoder(const Calibration& calibration, double damp) {
  return [&calibration, damp](const std::string& hf_name, const QuantType& type, const float* w, int64_t rows,
                              int64_t row, const float* importance) -> std::optional<std::vector<uint8_t>> {
    const at::Tensor* h = calibration.find(hf_name);
    if (!h || h->size(0) != row || !supports_gptq(type)) return std::nullopt;
    return encode_gptq(type, w, rows, row, *h, importance, damp);
  };
}

}  // namespace anvil::quant
