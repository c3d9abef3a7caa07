#include "chat/jinja_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstring>

#include "chat/jinja_budget.h"
#include "tokenizer/utf8.h"

namespace anvil::chat::jinja::text {

char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC2 ? 2 : 0;
  if (b0 > 0xF4) len = 0;
  char32_t cp = len == 4 ? (b0 & 0x07) : len == 3 ? (b0 & 0x0F) : (b0 & 0x1F);
  bool ok = len > 0 && i + len <= s.size();
  for (int k = 1; ok && k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) ok = false;
    cp = (cp << 6) | (b & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid like any stray byte.
  if (ok &&
      ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
    ok = false;
  if (!ok) {
    ++i;
    return 0xDC00 + b0;
  }
  i += len;
  return cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {  // an escaped invalid byte goes back as itself
    out += static_cast<char>(cp - 0xDC00);
    return;
  }
  tokenizer::append_utf8(out, static_cast<uint32_t>(cp));
}

bool is_ascii(std::string_view s) {
  spend_bytes(s.size());
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

size_t code_point_count(std::string_view s) {
  spend_bytes(s.size());
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    if (static_cast<unsigned char>(s[i]) < 0x80) ++i;
    else next_code_point(s, i);
  }
  return n;
}

std::vector<size_t> code_point_offsets(std::string_view s) {
  spend_bytes(s.size());
  std::vector<size_t> out;
  out.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    out.push_back(i);
    next_code_point(s, i);
  }
  out.push_back(s.size());
  return out;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static utf8proc_category_t category(char32_t cp) {
  if (cp > 0x10FFFF) return UTF8PROC_CATEGORY_CN;
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp));
}

bool is_printable(char32_t cp) {
  if (cp == ' ') return true;
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS: return false;
    default: return true;
  }
}

bool is_word(char32_t cp) {
  if (cp == '_') return true;
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return true;
    default: return false;
  }
}

bool is_alpha(char32_t cp) {
  switch (category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return true;
    default: return false;
  }
}

bool is_decimal(char32_t cp) { return category(cp) == UTF8PROC_CATEGORY_ND; }

bool is_cased_letter(char32_t cp) {
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

static bool is_surrogate_escape(char32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }

char32_t to_upper(char32_t cp) {
  return is_surrogate_escape(cp) || cp > 0x10FFFF
             ? cp
             : static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp)));
}
char32_t to_lower(char32_t cp) {
  return is_surrogate_escape(cp) || cp > 0x10FFFF
             ? cp
             : static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
}
char32_t to_title(char32_t cp) {
  return is_surrogate_escape(cp) || cp > 0x10FFFF
             ? cp
             : static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(cp)));
}

// Python uses the full case mappings; the one that templates plausibly meet is German sharp s.
static void append_upper(std::string& out, char32_t cp) {
  if (cp == 0xDF) out += "SS";
  else append_utf8(out, to_upper(cp));
}

std::string_view strip(std::string_view s, Side side) {
  spend_bytes(s.size());
  size_t begin = 0, end = s.size();
  if (side != Side::Right) {
    while (begin < end) {
      size_t i = begin;
      if (!is_space(next_code_point(s, i))) break;
      begin = i;
    }
  }
  if (side != Side::Left) {
    while (end > begin) {
      // Back up to the lead byte of the last code point; a stray continuation byte stands alone.
      size_t start = end - 1;
      while (start > begin && end - start < 4 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t i = start;
      char32_t cp = next_code_point(s.substr(0, end), i);
      if (i != end) start = end - 1, cp = 0;
      if (!is_space(cp)) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

std::string_view strip(std::string_view s, Side side, std::string_view chars) {
  std::vector<char32_t> set;  // sorted: a hostile `chars` must not make each test linear
  for (size_t i = 0; i < chars.size();) set.push_back(next_code_point(chars, i));
  std::sort(set.begin(), set.end());
  auto in_set = [&](char32_t cp) { return std::binary_search(set.begin(), set.end(), cp); };
  const std::vector<size_t> off = code_point_offsets(s);
  size_t b = 0, e = off.size() - 1;  // code point indices
  auto cp_at = [&](size_t k) {
    size_t i = off[k];
    return next_code_point(s, i);
  };
  if (side != Side::Right)
    while (b < e && in_set(cp_at(b))) ++b;
  if (side != Side::Left)
    while (e > b && in_set(cp_at(e - 1))) --e;
  return s.substr(off[b], off[e] - off[b]);
}

size_t find(std::string_view hay, std::string_view needle, size_t from) {
  if (from > hay.size()) return std::string_view::npos;
  if (needle.empty()) return from;
  const void* p = memmem(hay.data() + from, hay.size() - from, needle.data(), needle.size());
  const size_t at = p ? static_cast<size_t>(static_cast<const char*>(p) - hay.data()) : std::string_view::npos;
  spend_bytes((p ? at + needle.size() : hay.size()) - from);  // what was scanned
  return at;
}

size_t rfind(std::string_view hay, std::string_view needle) {
  size_t last = std::string_view::npos;
  for (size_t at = text::find(hay, needle, 0); at != std::string_view::npos; at = text::find(hay, needle, at + 1))
    last = at;
  return last;
}

size_t count(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return code_point_count(hay) + 1;
  size_t n = 0;
  for (size_t at = text::find(hay, needle, 0); at != std::string_view::npos;
       at = text::find(hay, needle, at + needle.size()))
    ++n;
  return n;
}

// Whitespace runs, scanning code points: returns the byte offset after the run starting at i.
static size_t skip_space(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t j = i;
    if (!is_space(next_code_point(s, j))) break;
    i = j;
  }
  return i;
}
static size_t skip_word(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t j = i;
    if (is_space(next_code_point(s, j))) break;
    i = j;
  }
  return i;
}

std::vector<std::string> split(std::string_view s, const std::string* sep, long maxsplit) {
  spend_bytes(s.size());
  std::vector<std::string> out;
  if (sep) {
    size_t start = 0;
    for (long n = 0; maxsplit < 0 || n < maxsplit; ++n) {
      const size_t at = text::find(s, *sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  size_t i = skip_space(s, 0);
  for (long n = 0; i < s.size() && (maxsplit < 0 || n < maxsplit); ++n) {
    const size_t end = skip_word(s, i);
    out.emplace_back(s.substr(i, end - i));
    i = skip_space(s, end);
  }
  if (i < s.size()) out.emplace_back(s.substr(i));
  return out;
}

std::vector<std::string> rsplit(std::string_view s, const std::string* sep, long maxsplit) {
  if (maxsplit < 0) return split(s, sep, -1);
  spend_bytes(s.size());
  std::vector<std::string> out;
  if (sep) {
    std::vector<size_t> hits;  // non-overlapping, as found left to right
    for (size_t at = text::find(s, *sep, 0); at != std::string_view::npos; at = text::find(s, *sep, at + sep->size()))
      hits.push_back(at);
    // Python matches from the right; for separators that cannot overlap themselves the two agree.
    size_t end = s.size();
    long n = 0;
    for (size_t k = hits.size(); k-- > 0 && n < maxsplit; ++n) {
      out.emplace_back(s.substr(hits[k] + sep->size(), end - hits[k] - sep->size()));
      end = hits[k];
    }
    out.emplace_back(s.substr(0, end));
  } else {
    std::vector<std::pair<size_t, size_t>> words;
    for (size_t i = skip_space(s, 0); i < s.size(); i = skip_space(s, i)) {
      const size_t end = skip_word(s, i);
      words.emplace_back(i, end);
      i = end;
    }
    long n = 0;
    size_t k = words.size();
    for (; k > 0 && n < maxsplit; --k, ++n)
      out.emplace_back(s.substr(words[k - 1].first, words[k - 1].second - words[k - 1].first));
    if (k > 0) out.emplace_back(s.substr(0, words[k - 1].second));  // the rest keeps its leading space
  }
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> splitlines(std::string_view s) {
  spend_bytes(s.size());
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    const size_t at = i;
    const char32_t cp = next_code_point(s, i);
    const bool brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
                     cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (!brk) continue;
    out.emplace_back(s.substr(start, at - start));
    if (cp == '\r' && i < s.size() && s[i] == '\n') ++i;
    start = i;
  }
  if (start < s.size()) out.emplace_back(s.substr(start));
  return out;
}

std::optional<std::string> replace(std::string_view s, std::string_view old, std::string_view repl, long count,
                                   size_t max_size) {
  std::string out;
  auto fits = [&](size_t more) { return out.size() + more <= max_size; };
  if (old.empty()) {  // Python inserts `new` before every character and at the end
    for (size_t i = 0;;) {
      if (count-- == 0) {
        if (!fits(s.size() - i)) return std::nullopt;
        out.append(s.substr(i));
        break;
      }
      if (!fits(repl.size())) return std::nullopt;
      out.append(repl);
      if (i == s.size()) break;
      const size_t start = i;
      next_code_point(s, i);
      out.append(s.substr(start, i - start));
    }
    return out;
  }
  size_t start = 0;
  for (size_t at = text::find(s, old, 0); at != std::string_view::npos && count-- != 0;
       at = text::find(s, old, start)) {
    if (!fits(at - start + repl.size())) return std::nullopt;
    out.append(s.substr(start, at - start));
    out.append(repl);
    start = at + old.size();
  }
  if (!fits(s.size() - start)) return std::nullopt;
  out.append(s.substr(start));
  return out;
}

std::string upper(std::string_view s) {
  spend_bytes(s.size());
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (static_cast<unsigned char>(c) < 0x80) {  // the common case, without a table lookup
      out += c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c;
      ++i;
    } else {
      append_upper(out, next_code_point(s, i));
    }
  }
  return out;
}

std::string lower(std::string_view s) {
  spend_bytes(s.size());
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (static_cast<unsigned char>(c) < 0x80) {
      out += c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
      ++i;
    } else {
      append_utf8(out, to_lower(next_code_point(s, i)));
    }
  }
  return out;
}

std::string python_title(std::string_view s) {
  spend_bytes(s.size());
  std::string out;
  out.reserve(s.size());
  bool previous_cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = next_code_point(s, i);
    append_utf8(out, previous_cased ? to_lower(cp) : to_title(cp));
    previous_cased = is_cased_letter(cp);
  }
  return out;
}

std::string jinja_title(std::string_view s) {
  spend_bytes(s.size());
  std::string out;
  out.reserve(s.size());
  bool word_start = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = next_code_point(s, i);
    const bool delimiter = is_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    if (delimiter) append_utf8(out, cp);
    else if (word_start) append_upper(out, cp);
    else append_utf8(out, to_lower(cp));
    word_start = delimiter;
  }
  return out;
}

std::string capitalize(std::string_view s) {
  spend_bytes(s.size());
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const bool first = i == 0;
    const char32_t cp = next_code_point(s, i);
    append_utf8(out, first ? to_title(cp) : to_lower(cp));
  }
  return out;
}

std::string html_escape(std::string_view s) {
  spend_bytes(s.size());
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

void append_repr(std::string& out, std::string_view s) {
  spend_bytes(s.size());
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  static const char* hex = "0123456789abcdef";
  out += quote;
  for (size_t i = 0; i < s.size();) {
    const char32_t cp = next_code_point(s, i);
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && !is_printable(cp))) {
      const int digits = cp <= 0xFF ? 2 : cp <= 0xFFFF ? 4 : 8;
      out += digits == 2 ? "\\x" : digits == 4 ? "\\u" : "\\U";
      for (int k = digits - 1; k >= 0; --k) out += hex[(cp >> (4 * k)) & 0xF];
    } else {
      append_utf8(out, cp);
    }
  }
  out += quote;
}

}  // namespace anvil::chat::jinja::text
