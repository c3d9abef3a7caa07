#pragma once
// Dot products of stored weight rows with one fp32 activation vector, computed from the bytes as
// the file holds them (ggml blocks, bf16, f32): the product a decoding step needs, without writing
// the weights out in fp32. Each fused kernel unpacks a block's integers into fp32 lanes and
// multiplies them by the activations, the block's scales applied once per sub-block; the result
// equals "dequantize, then an fp32 dot product" up to fp32 summation order (the scales factor out
// of the sums). No LibTorch here: the light front end and the kernel share it.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace anvil::kernel {

// y[r] = sum_k W[r, k] * x[k] for r < rows, where row r's `cols` elements of ggml type
// `ggml_type` start at w + i * row_stride bytes, i = row_index[r] (or r when row_index is null:
// a permuted view reads its rows in place). cols is a whole number of the type's blocks.
// Types without a fused kernel are decoded in row pieces on the stack and dotted.
void dot_rows(uint32_t ggml_type, const uint8_t* w, size_t row_stride, const int32_t* row_index, int64_t rows,
              int64_t cols, const float* x, float* y);

// One row of `cols` elements in fp32, the values ggml's reference decoder gives (vectorized for the
// types with fused kernels): the tiles the batched GEMM multiplies.
void decode_row(uint32_t ggml_type, const uint8_t* row, int64_t cols, float* y);

// Whether `ggml_type` has a fused kernel, and which instruction set runs them ("avx512", "avx2",
// "generic").
bool has_fused_dot(uint32_t ggml_type);
std::string_view dot_isa();
// Tests and benchmarks: run a given instruction set's build ("" = the best this CPU has).
void force_dot_isa(std::string_view isa);

}  // namespace anvil::kernel
