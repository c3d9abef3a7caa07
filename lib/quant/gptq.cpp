#include "quant/gptq.h"

#include "util/error.h"

namespace anvil::quant {

void gptq(const at::Tensor& weight, const at::Tensor& hessian, double damp, const ColumnQuantizer& quantizer) {
  const int64_t out = weight.size(0), in = weight.size(1), width = quantizer.group_width;
  if (hessian.sizes() != at::IntArrayRef({in, in})) fail("gptq", "Hessian does not match the weight's columns");
  at::Tensor W = weight.to(at::kDouble).clone();
  at::Tensor H = hessian.to(at::kDouble).clone();
  // Columns no calibration token ever used carry no information: their weights go to zero.
  auto dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1);
  W.masked_fill_(dead.unsqueeze(0), 0);
  H.diagonal().add_(damp * H.diagonal().mean().item<double>());
  at::Tensor perm;  // processing position -> column
  if (quantizer.act_order) {
    for (int64_t c = 0; c < in; c += width)
      quantizer.start_group(c, W.narrow(1, c, std::min(width, in - c)).to(at::kFloat).contiguous());
    perm = at::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true);
    W = W.index_select(1, perm);
    H = H.index_select(0, perm).index_select(1, perm);
  }
  // Row i of the upper Cholesky factor of H^-1 says how the columns after i absorb i's error.
  at::Tensor Hinv = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(H)), /*upper=*/true);

  const int64_t block = 128;  // lazy batch: errors reach columns beyond the block once per block
  for (int64_t b0 = 0; b0 < in; b0 += block) {
    const int64_t b1 = std::min(in, b0 + block), n = b1 - b0;
    at::Tensor W1 = W.narrow(1, b0, n).clone(), Err = at::zeros({out, n}, at::kDouble);
    at::Tensor Hinv1 = Hinv.narrow(0, b0, n).narrow(1, b0, n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t col = perm.defined() ? perm[b0 + i].item<int64_t>() : b0 + i;
      if (!perm.defined() && col % width == 0) {
        // The group's columns as they are now: those inside this block from W1, later ones from W.
        const int64_t inside = std::min(n - i, width), beyond = std::min(in, col + width) - b1;
        at::Tensor group = beyond > 0 ? at::cat({W1.narrow(1, i, inside), W.narrow(1, b1, beyond)}, 1)
                                      : W1.narrow(1, i, inside);
        quantizer.start_group(col, group.to(at::kFloat).contiguous());
      }
      at::Tensor w = W1.select(1, i);
      at::Tensor q = quantizer.quantize_column(col, w.to(at::kFloat).contiguous()).to(at::kDouble);
      at::Tensor err = (w - q) / Hinv1[i][i].item<double>();
      W1.narrow(1, i, n - i).sub_(err.unsqueeze(1) * Hinv1[i].narrow(0, i, n - i).unsqueeze(0));
      Err.select(1, i).copy_(err);
    }
    if (b1 < in) W.narrow(1, b1, in - b1).sub_(at::matmul(Err, Hinv.narrow(0, b0, n).narrow(1, b1, in - b1)));
  }
}

}  // namespace anvil::quant
