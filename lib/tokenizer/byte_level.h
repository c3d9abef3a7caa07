#pragma once
// GPT-2's byte <-> printable-character table used by byte-level BPE: every byte maps to one
// Unicode code point so that any byte string becomes a string of vocabulary characters.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace anvil::tokenizer {

// UTF-8 text of the code point standing for each byte.
const std::array<std::string, 256>& byte_to_unicode();
// Maps each byte of `bytes` to its stand-in character.
std::string bytes_to_symbols(std::string_view bytes);
// Inverse: code points from the table become their byte; any other code point is kept as UTF-8.
std::string symbols_to_bytes(std::string_view symbols);

// Decodes one UTF-8 code point at `pos`, advancing it; returns -1 for malformed input.
int32_t next_code_point(std::string_view text, size_t& pos);
void append_utf8(std::string& out, uint32_t cp);

}  // namespace anvil::tokenizer
