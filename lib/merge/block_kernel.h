#pragma once
// The CPU fast path of the merge runner: methods that are elementwise (given per-tensor
// statistics) run over the stored tensor bytes in blocks of a few thousand elements (decode
// F32/F16/BF16, compute in fp32, round once into the output dtype) with no tensor operations.
// Several times faster than the same arithmetic as separate tensor operations, and no
// per-chunk allocations.
#include <cstdint>
#include <memory>
#include <vector>

#include "io/dtype.h"

namespace anvil::merge {

struct LinearForm;

constexpr int64_t kMergeBlock = 2048;  // elements per block: kernels see at most this many

struct CombineInput {
  const uint8_t* data;  // first element of the range
  io::DType dtype;
};

bool can_fuse(io::DType dtype);

// A method's arithmetic on one block: x[k] points at n decoded floats of input k (config order).
class BlockKernel {
 public:
  virtual ~BlockKernel() = default;
  // Statistics pass `pass` (of MergeMethod::statistics_passes()); blocks arrive in element order.
  virtual void accumulate(const float* const* x, int64_t n, int pass, std::vector<double>& stats) {}
  virtual void merge(const float* const* x, int64_t n, float* out, std::vector<double>* stats) = 0;
};

// out = sum_k coeffs[k] * x_k, or x_b + sum_k coeffs[k] * (x_k - x_b) with a delta base.
std::unique_ptr<BlockKernel> linear_kernel(const LinearForm& form);

// Elements [0, n) of every input, block by block, in order.
void run_statistics(BlockKernel& kernel, const std::vector<CombineInput>& inputs, int64_t n, int pass,
                    std::vector<double>& stats);
// out (n elements of out_dtype) = the kernel's merge of elements [0, n) of the inputs.
void run_merge(BlockKernel& kernel, const std::vector<CombineInput>& inputs, int64_t n, io::DType out_dtype,
               uint8_t* out, std::vector<double>* stats = nullptr);

}  // namespace anvil::merge
