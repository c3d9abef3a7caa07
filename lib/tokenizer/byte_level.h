#pragma once
// GPT-2's byte <-> printable-character table used by byte-level BPE: every byte maps to one
// Unicode code point so that any byte string becomes a string of vocabulary characters.
#include <array>
#include <optional>
#include <cstdint>
#include <string>
#include <string_view>

#include "tokenizer/utf8.h"

namespace anvil::tokenizer {

// UTF-8 text of the code point standing for each byte.
const std::array<std::string, 256>& byte_to_unicode();
// Maps each byte of `bytes` to its stand-in character.
std::string bytes_to_symbols(std::string_view bytes);
// Inverse: code points from the table become their byte; any other code point is kept as UTF-8.
// One token as the library's ByteLevel decoder reads it: its bytes when every character is in
// the table, nullopt otherwise (the token then stands for itself).
std::optional<std::string> token_symbols_to_bytes(std::string_view token);


}  // namespace anvil::tokenizer
