#pragma once
// The only place where safetensors views become LibTorch tensors (and back).
#include <ATen/ATen.h>

#include "io/safetensors.h"

namespace anvil::model {

at::ScalarType to_scalar_type(io::DType dtype);   // throws for dtypes LibTorch lacks
io::DType from_scalar_type(at::ScalarType type);

// A tensor that aliases the memory-mapped bytes (read-only: never write into it).
at::Tensor view_tensor(const io::TensorView& view);
// A private copy converted to `dtype` on `device`.
at::Tensor load_tensor(const io::TensorView& view, at::ScalarType dtype, at::Device device = at::kCPU);

// Parses "f32"/"float32"/"bf16"/"bfloat16"/"f16"/"float16" (also config.json spellings).
at::ScalarType parse_float_dtype(const std::string& name);

}  // namespace anvil::model
