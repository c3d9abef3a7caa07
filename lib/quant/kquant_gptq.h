#pragma once
// GPTQ for ggml's k-quants: at each 256-column block the (importance-weighted) reference encoder
// fixes the block's scales and mins for every row; the GPTQ loop then picks each element's level
// on that grid while compensating earlier columns' errors. The result is an ordinary block of the
// type: llama.cpp reads it unchanged.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "quant/quant_types.h"

namespace anvil::quant {

bool supports_gptq(const QuantType& type);
// w: rows x cols floats in GGUF row layout; hessian [cols, cols]; importance: cols weights or null.
std::vector<uint8_t> encode_gptq(const QuantType& type, const float* w, int64_t rows, int64_t cols,
                                 const at::Tensor& hessian, const float* importance, double damp = 0.01);

}  // namespace anvil::quant
