#pragma once
// Group-wise symmetric integer quantization of linear weights, the scheme shared by
// compressed-tensors' pack-quantized (W4A16/W8A16) and GPTQ's symmetric checkpoints: per row and
// per group of `group_size` input columns, scale = absmax / ((2^bits - 1) / 2) and
// q = clamp(round(w / scale), -2^(bits-1), 2^(bits-1) - 1); w ~ q * scale.
// Round-to-nearest, or GPTQ (Frantar et al. 2022): columns quantized in order, each one's error
// spread over the columns not yet quantized through the inverse Hessian of the layer's inputs.
#include <ATen/ATen.h>

#include <cstdint>

namespace anvil::quant {

struct IntQuantSpec {
  int bits = 4;              // 4 or 8
  int64_t group_size = 128;  // input columns per scale; 0: one scale per row
  int64_t groups(int64_t in) const { return group_size > 0 ? in / group_size : 1; }
  int64_t width(int64_t in) const { return group_size > 0 ? group_size : in; }
};

struct QuantizedMatrix {
  at::Tensor q;      // int8 [out, in], signed values
  at::Tensor scale;  // fp32 [out, groups], already rounded to the dtype it is stored in
};

// `scale_dtype`: the dtype the checkpoint stores scales in (bf16 / f16); q is computed with the
// rounded scale, so that the stored pair dequantizes to exactly what was optimised.
QuantizedMatrix quantize_rtn(const at::Tensor& weight, const IntQuantSpec& spec, at::ScalarType scale_dtype);
// hessian: [in, in], sum over calibration tokens of x x^T for this layer's inputs.
// damp: fraction of the mean diagonal added to it (GPTQ's percdamp).
QuantizedMatrix quantize_gptq(const at::Tensor& weight, const at::Tensor& hessian, const IntQuantSpec& spec,
                              at::ScalarType scale_dtype, double damp = 0.01);
at::Tensor dequantize(const QuantizedMatrix& m, const IntQuantSpec& spec);  // fp32 [out, in]

// Checks that a weight of `in` columns can use this spec (a whole number of groups).
bool int_quantizable(int64_t in, const IntQuantSpec& spec);

}  // namespace anvil::quant
