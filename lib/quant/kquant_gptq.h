#pragma once
// GPTQ for ggml's k-quants: at each 256-column block the (importance-weighted) reference encoder
// fixes the block's scales and mins for every row; the GPTQ loop then picks each element's level
// on that grid while compensating earlier columns' errors. The result is an ordinary block of the
// type: llama.cpp reads it unchanged.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "quant/gguf_export.h"
#include "quant/quant_types.h"

namespace anvil::quant {

struct Calibration;

bool supports_gptq(const QuantType& type);
// w: rows x cols floats in GGUF row layout; hessian [cols, cols]; importance: cols weights or null.
std::vector<uint8_t> encode_gptq(const QuantType& type, const float* w, int64_t rows, int64_t cols,
                                 const at::Tensor& hessian, const float* importance, double damp = 0.01);

// For export_gguf: k-quant tensors with a Hessian in `calibration` are encoded with GPTQ on the
// grid the (importance-weighted) reference encoder chose; the rest go to the reference encoder.
TensorEncoder gptq_tensor_encoder(const Calibration& calibration, double damp = 0.01);

}  // namespace anvil::quant
