#pragma once
// Python's str semantics over UTF-8 bytes. Templates index, slice, strip and case-map strings the
// way Python does, by code point and with Unicode's notion of whitespace, so these helpers do too.
// Bytes that are not valid UTF-8 decode to U+DC80..U+DCFF (Python's surrogateescape) and encode
// back to the same byte: nothing a caller passes in is lost or rejected.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace anvil::chat::jinja::text {

// The code point at s[i]; advances i past it.
char32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, char32_t cp);
bool is_ascii(std::string_view s);
size_t code_point_count(std::string_view s);
// Byte offset of every code point, plus s.size() at the end (for slicing non-ASCII strings).
std::vector<size_t> code_point_offsets(std::string_view s);

bool is_space(char32_t cp);      // str.isspace()
bool is_printable(char32_t cp);  // str.isprintable(), as repr() uses it
bool is_word(char32_t cp);       // a character of regex \w
bool is_alpha(char32_t cp);      // str.isalpha(): a letter
bool is_decimal(char32_t cp);    // a decimal digit (str.isdigit() for all practical text)
bool is_cased_letter(char32_t cp);
char32_t to_upper(char32_t cp);
char32_t to_lower(char32_t cp);
char32_t to_title(char32_t cp);

enum class Side { Both, Left, Right };
// str.strip(chars); no chars strips whitespace.
std::string_view strip(std::string_view s, Side side);
std::string_view strip(std::string_view s, Side side, std::string_view chars);

// Position of `needle` in `hay` at or after `from` (bytes), or npos. Linear time whatever the
// input (the two-way algorithm of memmem), so hostile strings cannot make a search quadratic.
size_t find(std::string_view hay, std::string_view needle, size_t from = 0);
size_t rfind(std::string_view hay, std::string_view needle);
size_t count(std::string_view hay, std::string_view needle);

// str.split(sep, maxsplit) / str.rsplit; sep == nullptr splits on runs of whitespace.
std::vector<std::string> split(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> splitlines(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all. nullopt when the result would exceed max_size.
std::optional<std::string> replace(std::string_view s, std::string_view old, std::string_view repl, long count,
                                   size_t max_size);

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string python_title(std::string_view s);  // str.title(): "they're" -> "They'Re"
std::string jinja_title(std::string_view s);   // the title filter: words start after spaces and -([{<
std::string capitalize(std::string_view s);

// markupsafe.escape: & < > " ' as HTML entities.
std::string html_escape(std::string_view s);

// repr() of a Python str: quotes and escapes exactly as CPython chooses them.
void append_repr(std::string& out, std::string_view s);

}  // namespace anvil::chat::jinja::text
