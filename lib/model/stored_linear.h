#pragma once
// Products with a stored weight matrix (model/weight_matrix.h) on CPU in fp32, never expanding the
// whole matrix:
//  - a few activation rows (decoding): the fused block dot products, split over threads by rows;
//  - many rows (prompts, perplexity windows, training): tiles of W dequantized into a small
//    per-thread buffer (kTileBytes) and multiplied by all the rows at once with the BLAS GEMM.
// Results equal "dequantize W, then the fp32 product" up to fp32 summation order.
#include <ATen/ATen.h>

#include "model/weight_matrix.h"

namespace anvil::model {

// The fp32 scratch a tile may use per thread, and the most activation rows the dot kernels take.
constexpr int64_t kTileBytes = 8 << 20;
constexpr int64_t kDotRowsMax = 4;

// x [..., cols] fp32 -> x W^T [..., rows]. Differentiable in x (W gets no gradient) when autograd
// records, so LoRA trains on a stored base.
at::Tensor stored_linear(const WeightMatrixPtr& w, const at::Tensor& x);
// g [..., rows] -> g W [..., cols]: the input gradient of stored_linear.
at::Tensor stored_linear_transposed(const WeightMatrix& w, const at::Tensor& g);
// The rows ids select (an embedding lookup): [ids..., cols] fp32.
at::Tensor stored_embedding(const WeightMatrix& w, const at::Tensor& ids);
// The whole matrix [rows, cols] in fp32: for a consumer that needs it dense (a merged adapter).
at::Tensor dequantize_matrix(const WeightMatrix& w);

}  // namespace anvil::model
