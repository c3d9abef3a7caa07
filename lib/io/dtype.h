#pragma once
// Element types as the safetensors spec names them.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace anvil::io {

enum class DType : uint8_t {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64,
};

std::optional<DType> parse_dtype(std::string_view name);
std::string_view dtype_name(DType dtype);
size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);

// Scalar conversions used where no tensor library is involved (writers, quantizers).
float bf16_to_float(uint16_t bits);
float f16_to_float(uint16_t bits);
uint16_t float_to_bf16(float value);  // round to nearest even, NaN stays NaN
uint16_t float_to_f16(float value);   // round to nearest even, overflow to inf

}  // namespace anvil::io
