#include "tokenizer/byte_level.h"

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

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int32_t next_code_point(std::string_view s, size_t& pos) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  uint8_t c = byte(pos);
  int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || pos + len > s.size()) {
    ++pos;
    return -1;
  }
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int i = 1; i < len; ++i) {
    uint8_t cc = byte(pos + i);
    if ((cc & 0xC0) != 0x80) {
      ++pos;
      return -1;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  pos += len;
  return static_cast<int32_t>(cp);
}

const std::array<std::string, 256>& byte_to_unicode() { return tables().to_symbol; }

std::string bytes_to_symbols(std::string_view bytes) {
  const auto& t = tables().to_symbol;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += t[b];
  return out;
}

std::string symbols_to_bytes(std::string_view symbols) {
  const auto& from = tables().from_code_point;
  std::string out;
  out.reserve(symbols.size());
  size_t pos = 0;
  while (pos < symbols.size()) {
    size_t start = pos;
    int32_t cp = next_code_point(symbols, pos);
    if (cp >= 0 && cp < 512 && from[cp] >= 0) out += static_cast<char>(from[cp]);
    else out.append(symbols.substr(start, pos - start));
  }
  return out;
}

}  // namespace anvil::tokenizer
