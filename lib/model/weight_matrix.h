#pragma once
// A linear layer's weight [rows = output features, cols = input features] as the file stores it:
// ggml blocks of any type anvil decodes (f32, f16 and bf16 are ggml types too), read in place from
// a memory-mapped GGUF or safetensors file. The kernel multiplies activations by it through two
// operations (model/stored_linear.h builds the batched products and the gradient on them):
//  - dot_rows: one activation row against a range of weight rows, fused over the blocks;
//  - dequantize_rows: a range of rows in fp32, for a tile that a GEMM then multiplies by many
//    activation rows at once (the conversion amortised over the batch).
// A new storage format is one implementation of this interface. No LibTorch here.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/dtype.h"

namespace anvil::model {

class WeightMatrix {
 public:
  virtual ~WeightMatrix() = default;
  virtual int64_t rows() const = 0;
  virtual int64_t cols() const = 0;
  // The storage format as llama.cpp names it ("Q4_K", "BF16"); a stack lists its parts' formats.
  virtual std::string format() const = 0;
  virtual uint64_t stored_bytes() const = 0;
  // Rows [first, first + count) in fp32, row-major, into out (count * cols values).
  virtual void dequantize_rows(int64_t first, int64_t count, float* out) const = 0;
  // y[r] = W[first + r, :] . x for r < count (x: cols fp32 values).
  virtual void dot_rows(int64_t first, int64_t count, const float* x, float* y) const = 0;
};

using WeightMatrixPtr = std::shared_ptr<const WeightMatrix>;

// `rows` rows of `cols` elements of ggml type `ggml_type`, row r at data + r * row bytes, kept
// alive by `owner` (the mapped file). `row_order` (optional, `rows` entries) reads matrix row r
// from stored row row_order[r]: llama.cpp's rotary order of q/k rows, undone without a copy.
// Fails if the type cannot be decoded or cols is not a whole number of its blocks.
WeightMatrixPtr stored_rows(uint32_t ggml_type, const uint8_t* data, int64_t rows, int64_t cols,
                            std::shared_ptr<const void> owner, std::vector<int32_t> row_order = {});

// Matrices with the same cols stacked by rows: q, k and v (or gate and up) as one product.
WeightMatrixPtr stacked_rows(std::vector<WeightMatrixPtr> parts);

// Rows [first, first + count) of `matrix`, read in place (the LM head one vocabulary slice at a time).
WeightMatrixPtr row_slice(WeightMatrixPtr matrix, int64_t first, int64_t count);

// The ggml type id of a safetensors dtype that stored_rows can read in place (F32, F16, BF16),
// or -1.
int ggml_type_of_dtype(io::DType dtype);

}  // namespace anvil::model
