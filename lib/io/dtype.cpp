#include "io/dtype.h"

#include <array>
#include <bit>
#include <cmath>

namespace anvil::io {
namespace {

struct DTypeTraits {
  DType dtype;
  std::string_view name;
  size_t size;
  bool is_float;
};

constexpr std::array<DTypeTraits, 15> kTraits{{
    {DType::BOOL, "BOOL", 1, false},   {DType::U8, "U8", 1, false},
    {DType::I8, "I8", 1, false},       {DType::F8_E5M2, "F8_E5M2", 1, true},
    {DType::F8_E4M3, "F8_E4M3", 1, true}, {DType::I16, "I16", 2, false},
    {DType::U16, "U16", 2, false},     {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},    {DType::I32, "I32", 4, false},
    {DType::U32, "U32", 4, false},     {DType::F32, "F32", 4, true},
    {DType::F64, "F64", 8, true},      {DType::I64, "I64", 8, false},
    {DType::U64, "U64", 8, false},
}};

const DTypeTraits& traits(DType dtype) { return kTraits[static_cast<size_t>(dtype)]; }

}  // namespace

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& t : kTraits)
    if (t.name == name) return t.dtype;
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) { return traits(dtype).name; }
size_t dtype_size(DType dtype) { return traits(dtype).size; }
bool dtype_is_float(DType dtype) { return traits(dtype).is_float; }

float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    float f = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -f : f;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_f16(float value) {
  uint32_t u = std::bit_cast<uint32_t>(value);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;            // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;           // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                 // below the smallest normal: subnormal
    // value * 2^24 rounded to nearest even gives the subnormal mantissa directly.
    float scaled = std::bit_cast<float>(abs) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

}  // namespace anvil::io
