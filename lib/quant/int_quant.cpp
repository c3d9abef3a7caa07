#include "quant/int_quant.h"

#include <cmath>

#include "quant/gptq.h"
#include "util/error.h"

namespace anvil::quant {
namespace {

double qmax(const IntQuantSpec& s) { return std::ldexp(1.0, s.bits - 1) - 1; }
double qmin(const IntQuantSpec& s) { return -std::ldexp(1.0, s.bits - 1); }

// Scales for columns of w [out, width]: absmax / ((2^bits - 1) / 2), rounded to storage.
at::Tensor group_scale(const at::Tensor& w, const IntQuantSpec& spec, at::ScalarType scale_dtype) {
  auto absmax = w.abs().amax(1, /*keepdim=*/true);
  auto scale = (absmax / ((std::ldexp(1.0, spec.bits) - 1) / 2)).clamp_min(1.1920929e-07);
  return scale.to(scale_dtype).to(at::kFloat);
}

at::Tensor round_clamp(const at::Tensor& w, const at::Tensor& scale, const IntQuantSpec& spec) {
  return at::round(w / scale).clamp_(qmin(spec), qmax(spec));
}

void check(const at::Tensor& weight, const IntQuantSpec& spec) {
  if (weight.dim() != 2) fail("int quantize", "weight must be 2-D");
  if (!int_quantizable(weight.size(1), spec))
    fail("int quantize", std::to_string(weight.size(1)) + " columns are not a whole number of groups of " +
                             std::to_string(spec.group_size));
}

}  // namespace

bool int_quantizable(int64_t in, const IntQuantSpec& spec) {
  return (spec.bits == 4 || spec.bits == 8) && (spec.group_size <= 0 || in % spec.group_size == 0) &&
         in % (32 / spec.bits) == 0;
}

QuantizedMatrix quantize_rtn(const at::Tensor& weight, const IntQuantSpec& spec, at::ScalarType scale_dtype) {
  check(weight, spec);
  const int64_t out = weight.size(0), in = weight.size(1), G = spec.groups(in), width = spec.width(in);
  auto w = weight.to(at::kFloat).reshape({out * G, width});
  auto scale = group_scale(w, spec, scale_dtype);
  QuantizedMatrix m;
  m.q = round_clamp(w, scale, spec).to(at::kChar).reshape({out, in});
  m.scale = scale.reshape({out, G});
  return m;
}

QuantizedMatrix quantize_gptq(const at::Tensor& weight, const at::Tensor& hessian, const IntQuantSpec& spec,
                              at::ScalarType scale_dtype, double damp) {
  check(weight, spec);
  const int64_t out = weight.size(0), in = weight.size(1), width = spec.width(in);
  QuantizedMatrix m{at::empty({out, in}, at::kChar), at::empty({out, spec.groups(in)}, at::kFloat)};
  at::Tensor scale;  // [out, 1] of the current group
  ColumnQuantizer quantizer;
  quantizer.group_width = width;
  quantizer.start_group = [&](int64_t col0, const at::Tensor& columns) {
    scale = group_scale(columns, spec, scale_dtype);
    m.scale.select(1, col0 / width).copy_(scale.squeeze(1));
  };
  // Rounded in fp32 exactly as round-to-nearest does, so that without correlations they agree.
  quantizer.quantize_column = [&](int64_t col, const at::Tensor& w) {
    at::Tensor q = round_clamp(w.unsqueeze(1), scale, spec).squeeze(1);
    m.q.select(1, col).copy_(q);
    return q * scale.squeeze(1);
  };
  gptq(weight, hessian, damp, quantizer);
  return m;
}

at::Tensor dequantize(const QuantizedMatrix& m, const IntQuantSpec& spec) {
  const int64_t out = m.q.size(0), in = m.q.size(1), G = spec.groups(in);
  return (m.q.to(at::kFloat).reshape({out, G, spec.width(in)}) * m.scale.unsqueeze(2)).reshape({out, in});
}

}  // namespace anvil::quant
