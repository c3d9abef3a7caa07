#include "merge/fused_combine.h"

#include <cstring>

#include "merge/merge_method.h"
#include "util/error.h"

namespace anvil::merge {
namespace {

constexpr int64_t kBlock = 2048;

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

void fused_combine(const std::vector<CombineInput>& inputs, const LinearForm& form, int64_t n, io::DType out_dtype,
                   uint8_t* out) {
  const size_t k = inputs.size();
  std::vector<float> coeffs(form.coeffs.begin(), form.coeffs.end());
  std::vector<float> x(k * kBlock), acc(kBlock);
  const size_t out_size = io::dtype_size(out_dtype);
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t m = std::min(kBlock, n - b);
    for (size_t j = 0; j < k; ++j) decode(inputs[j], b, m, x.data() + j * kBlock);
    if (form.delta_base >= 0) {
      const float* base = x.data() + static_cast<size_t>(form.delta_base) * kBlock;
      std::copy(base, base + m, acc.begin());
      for (size_t j = 0; j < k; ++j) {
        if (static_cast<int>(j) == form.delta_base || coeffs[j] == 0) continue;
        const float* xj = x.data() + j * kBlock;
        const float c = coeffs[j];
        for (int64_t i = 0; i < m; ++i) acc[i] += c * (xj[i] - base[i]);
      }
    } else {
      std::fill(acc.begin(), acc.begin() + m, 0.0f);
      for (size_t j = 0; j < k; ++j) {
        const float* xj = x.data() + j * kBlock;
        const float c = coeffs[j];
        if (c == 1.0f)
          for (int64_t i = 0; i < m; ++i) acc[i] += xj[i];
        else if (c != 0.0f)
          for (int64_t i = 0; i < m; ++i) acc[i] += c * xj[i];
      }
    }
    encode(acc.data(), m, out_dtype, out + static_cast<size_t>(b) * out_size);
  }
}

}  // namespace anvil::merge
