#pragma once
// GPTQ's core (Frantar et al. 2022), independent of the number format: columns of W [out, in] are
// quantized in order and each one's rounding error is spread over the columns not yet quantized,
// weighted by the inverse Hessian H^-1 of the layer's inputs (H = sum of x x^T). The format comes
// in through two callbacks, so integer groups and ggml's k-quant blocks share this loop.
#include <ATen/ATen.h>

#include <functional>

namespace anvil::quant {

struct ColumnQuantizer {
  int64_t group_width;  // the format's block of columns that shares scales
  // At each group start: the current (error-updated) columns [col0, col0 + width), fp32 [out, width].
  std::function<void(int64_t col0, const at::Tensor& columns)> start_group;
  // One column's current values, fp32 [out] -> the values it dequantizes to, fp32 [out].
  std::function<at::Tensor(int64_t col, const at::Tensor& w)> quantize_column;
  // GPTQ's act-order with static groups: every group's scales are fixed first from the original
  // weights, then columns are quantized in order of decreasing Hessian diagonal (the most-used
  // inputs first, while the most columns remain to absorb their error).
  bool act_order = false;
};

// damp: fraction of the Hessian's mean diagonal added to it before inversion.
void gptq(const at::Tensor& weight, const at::Tensor& hessian, double damp, const ColumnQuantizer& quantizer);

}  // namespace anvil::quant
