#pragma once
// One pass over stored tensor bytes for merges that are linear combinations of their inputs
// (see LinearForm): decode F32/F16/BF16, combine in fp32, round once into the output dtype.
// Several times faster than the same arithmetic as separate tensor operations.
#include <cstdint>
#include <span>
#include <vector>

#include "io/dtype.h"

namespace anvil::merge {

struct LinearForm;

struct CombineInput {
  const uint8_t* data;  // first element of the range
  io::DType dtype;
};

bool can_fuse(io::DType dtype);

// out[0..n) = the combination of inputs[k][0..n); `out` holds n elements of `out_dtype`.
void fused_combine(const std::vector<CombineInput>& inputs, const LinearForm& form, int64_t n, io::DType out_dtype,
                   uint8_t* out);

}  // namespace anvil::merge
