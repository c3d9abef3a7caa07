#include "merge/block_kernel.h"

#include <cstring>

#include "merge/merge_method.h"
#include "util/error.h"

namespace anvil::merge {
namespace {

constexpr int64_t kBlock = kMergeBlock;

void decode(const CombineInput& in, int64_t offset, int64_t n, float* out) {
  switch (in.dtype) {
    case io::DType::F32:
      std::memcpy(out, in.data + offset * 4, static_cast<size_t>(n) * 4);
      break;
    case io::DType::BF16: {
      // Copy the halves out first so the widening loop vectorizes (no unaligned aliasing).
      uint16_t halves[kBlock];
      std::memcpy(halves, in.data + offset * 2, static_cast<size_t>(n) * 2);
      uint32_t bits[kBlock];
      for (int64_t i = 0; i < n; ++i) bits[i] = static_cast<uint32_t>(halves[i]) << 16;
      std::memcpy(out, bits, static_cast<size_t>(n) * 4);
      break;
    }
    case io::DType::F16: {
      const uint8_t* p = in.data + offset * 2;
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = io::f16_to_float(h);
      }
      break;
    }
    default:
      fail("merge", "fused combine cannot read " + std::string(io::dtype_name(in.dtype)));
  }
}

void encode(const float* x, int64_t n, io::DType dtype, uint8_t* out) {
  switch (dtype) {
    case io::DType::F32:
      std::memcpy(out, x, static_cast<size_t>(n) * 4);
      break;
    case io::DType::BF16: {
      uint16_t halves[kBlock];
      for (int64_t i = 0; i < n; ++i) halves[i] = io::float_to_bf16(x[i]);
      std::memcpy(out, halves, static_cast<size_t>(n) * 2);
      break;
    }
    case io::DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h = io::float_to_f16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      break;
    default:
      fail("merge", "fused combine cannot write " + std::string(io::dtype_name(dtype)));
  }
}

}  // namespace

bool can_fuse(io::DType d) { return d == io::DType::F32 || d == io::DType::F16 || d == io::DType::BF16; }

namespace {

class LinearKernel final : public BlockKernel {
 public:
  explicit LinearKernel(const LinearForm& form) : coeffs_(form.coeffs.begin(), form.coeffs.end()), delta_base_(form.delta_base) {}

  void merge(const float* const* x, int64_t n, float* out, std::vector<double>*) override {
    if (delta_base_ >= 0) {
      const float* base = x[delta_base_];
      std::copy(base, base + n, out);
      for (size_t j = 0; j < coeffs_.size(); ++j) {
        if (static_cast<int>(j) == delta_base_ || coeffs_[j] == 0) continue;
        const float* xj = x[j];
        const float c = coeffs_[j];
        for (int64_t i = 0; i < n; ++i) out[i] += c * (xj[i] - base[i]);
      }
      return;
    }
    std::fill(out, out + n, 0.0f);
    for (size_t j = 0; j < coeffs_.size(); ++j) {
      const float* xj = x[j];
      const float c = coeffs_[j];
      if (c == 1.0f)
        for (int64_t i = 0; i < n; ++i) out[i] += xj[i];
      else if (c != 0.0f)
        for (int64_t i = 0; i < n; ++i) out[i] += c * xj[i];
    }
  }

 private:
  std::vector<float> coeffs_;
  int delta_base_;
};

// Decoded blocks of every input, reused across blocks.
struct DecodedBlocks {
  explicit DecodedBlocks(size_t k) : storage(k * kBlock), pointers(k) {
    for (size_t j = 0; j < k; ++j) pointers[j] = storage.data() + j * kBlock;
  }
  void load(const std::vector<CombineInput>& inputs, int64_t offset, int64_t n) {
    for (size_t j = 0; j < inputs.size(); ++j) decode(inputs[j], offset, n, pointers[j]);
  }
  std::vector<float> storage;
  std::vector<float*> pointers;
};

}  // namespace

std::unique_ptr<BlockKernel> linear_kernel(const LinearForm& form) { return std::make_unique<LinearKernel>(form); }

void run_statistics(BlockKernel& kernel, const std::vector<CombineInput>& inputs, int64_t n, int pass,
                    std::vector<double>& stats) {
  DecodedBlocks x(inputs.size());
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    x.load(inputs, b, m);
    kernel.accumulate(x.pointers.data(), m, pass, stats);
  }
}

void run_merge(BlockKernel& kernel, const std::vector<CombineInput>& inputs, int64_t n, io::DType out_dtype,
               uint8_t* out, std::vector<double>* stats) {
  DecodedBlocks x(inputs.size());
  std::vector<float> merged(kBlock);
  const size_t out_size = io::dtype_size(out_dtype);
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    x.load(inputs, b, m);
    kernel.merge(x.pointers.data(), m, merged.data(), stats);
    encode(merged.data(), m, out_dtype, out + static_cast<size_t>(b) * out_size);
  }
}

}  // namespace anvil::merge
