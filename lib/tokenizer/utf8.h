#pragma once
// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as Rust's str, so
// that what anvil calls text is what the tokenizers library calls text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace anvil::tokenizer {

// Decodes one code point at `pos`, advancing it; a malformed sequence returns -1 and advances
// `pos` past its maximal valid prefix (at least one byte), as a lossy decoder replaces it.
int32_t next_code_point(std::string_view text, size_t& pos);
void append_utf8(std::string& out, uint32_t cp);
// True when all of `text` is well-formed; otherwise `bad_at` (if given) is the first bad byte.
bool valid_utf8(std::string_view text, size_t* bad_at = nullptr);
// Unicode's White_Space (Rust's char::is_whitespace and regex \s).
bool is_white_space(uint32_t cp);
// Rust regex's \w: letters, marks, decimal and letter numbers, connector punctuation.
bool is_word_character(uint32_t cp);
// Rust's String::from_utf8_lossy: each maximal invalid subsequence becomes U+FFFD.
std::string lossy_utf8(std::string_view bytes);

}  // namespace anvil::tokenizer
