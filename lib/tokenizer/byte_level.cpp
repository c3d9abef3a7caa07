#include "tokenizer/byte_level.h"

#include <cstdint>

namespace anvil::tokenizer {
namespace {

struct Tables {
  std::array<std::string, 256> to_symbol;
  std::array<int16_t, 512> from_code_point;  // code point (< 512) -> byte, or -1
};

const Tables& tables() {
  static const Tables t = [] {
    Tables t{};
    t.from_code_point.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++);
      append_utf8(t.to_symbol[b], cp);
      t.from_code_point[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return t;
}

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return tables().to_symbol; }

std::string bytes_to_symbols(std::string_view bytes) {
  const auto& t = tables().to_symbol;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += t[b];
  return out;
}

std::optional<std::string> token_symbols_to_bytes(std::string_view token) {
  const auto& from = tables().from_code_point;
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    const int32_t cp = next_code_point(token, pos);
    if (cp < 0 || cp >= 512 || from[cp] < 0) return std::nullopt;
    out += static_cast<char>(from[cp]);
  }
  return out;
}


}  // namespace anvil::tokenizer
