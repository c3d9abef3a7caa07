#include "quant/int_quant.h"

#include <cmath>

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
  if (hessian.sizes() != at::IntArrayRef({in, in})) fail("gptq", "Hessian does not match the weight's columns");
  at::Tensor W = weight.to(at::kDouble).clone();
  at::Tensor H = hessian.to(at::kDouble).clone();
  // Columns no calibration token ever used carry no information: quantize them as zero.
  auto dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1);
  W.masked_fill_(dead.unsqueeze(0), 0);
  H.diagonal().add_(damp * H.diagonal().mean().item<double>());
  // The upper Cholesky factor of H^-1 gives, row by row, how the remaining columns absorb an error.
  at::Tensor Hinv = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(H)), /*upper=*/true);

  at::Tensor Q = at::empty({out, in}, at::kChar);
  at::Tensor scales = at::empty({out, spec.groups(in)}, at::kFloat);
  const int64_t block = 128;
  at::Tensor scale;
  for (int64_t b0 = 0; b0 < in; b0 += block) {
    const int64_t b1 = std::min(in, b0 + block), n = b1 - b0;
    at::Tensor W1 = W.narrow(1, b0, n).clone(), Err = at::zeros({out, n}, at::kDouble);
    at::Tensor Hinv1 = Hinv.narrow(0, b0, n).narrow(1, b0, n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t col = b0 + i;
      if (col % width == 0) {  // a new group: its scale from the columns as they are now
        at::Tensor group = at::cat({W1.narrow(1, i, std::min(n - i, width)),
                                    W.narrow(1, b1, std::max<int64_t>(0, std::min(in, col + width) - b1))}, 1);
        scale = group_scale(group.to(at::kFloat), spec, scale_dtype);
        scales.select(1, col / width).copy_(scale.squeeze(1));
      }
      at::Tensor w = W1.select(1, i);
      // Rounded in fp32 exactly as round-to-nearest does, so that without correlations they agree.
      at::Tensor q = round_clamp(w.to(at::kFloat).unsqueeze(1), scale, spec).squeeze(1);
      Q.select(1, col).copy_(q);
      at::Tensor err = (w - (q * scale.squeeze(1)).to(at::kDouble)) / Hinv1[i][i].item<double>();
      W1.narrow(1, i, n - i).sub_(err.unsqueeze(1) * Hinv1[i].narrow(0, i, n - i).unsqueeze(0));
      Err.select(1, i).copy_(err);
    }
    if (b1 < in) W.narrow(1, b1, in - b1).sub_(at::matmul(Err, Hinv.narrow(0, b0, n).narrow(1, b1, in - b1)));
  }
  return {Q, scales};
}

at::Tensor dequantize(const QuantizedMatrix& m, const IntQuantSpec& spec) {
  const int64_t out = m.q.size(0), in = m.q.size(1), G = spec.groups(in);
  return (m.q.to(at::kFloat).reshape({out, G, spec.width(in)}) * m.scale.unsqueeze(2)).reshape({out, in});
}

}  // namespace anvil::quant
