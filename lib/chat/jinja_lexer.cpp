#include "chat/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "chat/jinja_text.h"
#include "util/error.h"

namespace anvil::chat::jinja {

SourceText::SourceText(std::string_view raw) {
  text_.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r') {
      text_ += '\n';
      if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
    } else {
      text_ += raw[i];
    }
  }
  if (!text_.empty() && text_.back() == '\n') text_.pop_back();
  line_starts_.push_back(0);
  for (size_t i = 0; i < text_.size(); ++i)
    if (text_[i] == '\n') line_starts_.push_back(i + 1);
}

std::pair<int, int> SourceText::line_column(size_t offset) const {
  offset = std::min(offset, text_.size());
  const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
  const size_t start = *it;
  // Counted here, not with text::code_point_count: reporting an error must not charge the render's
  // budget, which may be what just ran out.
  int column = 1;
  for (size_t i = start; i < offset; ++column) text::next_code_point(std::string_view(text_).substr(0, offset), i);
  return {static_cast<int>(it - line_starts_.begin()) + 1, column};
}

std::string SourceText::at(size_t offset) const {
  const auto [line, column] = line_column(offset);
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

namespace {

class Lexer {
 public:
  Lexer(const SourceText& source, const std::string& where) : source_(source), s_(source.text()), where_(where) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;  // the previous token ended a line: lstrip_blocks may apply at offset 0
    while (pos < s_.size()) {
      const size_t open = find_tag(pos);
      if (open == std::string_view::npos) {
        push_data(pos, s_.substr(pos));
        break;
      }
      const char kind = s_[open + 1];
      size_t p = open + 2;
      const char sign = p < s_.size() && (s_[p] == '-' || s_[p] == '+') ? s_[p] : 0;
      if (sign) ++p;
      push_data(pos, control_whitespace(s_.substr(pos, open - pos), sign, kind != '{', line_starting));
      size_t raw_body = 0;
      if (kind == '%' && raw_begin(p, raw_body)) pos = lex_raw(open, raw_body);
      else if (kind == '#') pos = lex_comment(open, p);
      else pos = lex_tag(open, p, kind == '%');
      line_starting = pos > 0 && s_[pos - 1] == '\n';
    }
    tokens_.push_back(Token{TokenKind::End, s_.size(), {}, 0, 0});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(size_t offset, const std::string& what) const {
    fail(where_, source_.at(offset) + ": " + what);
  }

  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string_view::npos; i = s_.find('{', i + 1))
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    return std::string_view::npos;
  }

  // `{%-` strips all whitespace before the tag; otherwise lstrip_blocks strips the spaces and tabs
  // that start the tag's line, except for `{{` tags and `{%+`.
  static std::string_view control_whitespace(std::string_view text, char sign, bool lstrip, bool line_starting) {
    if (sign == '-') return text::strip(text, text::Side::Right);
    if (sign == '+' || !lstrip) return text;
    const size_t line = text.rfind('\n') + 1;  // npos + 1 == 0
    if (line == 0 && !line_starting) return text;
    const std::string_view tail = text.substr(line);
    if (!tail.empty() && text::strip(tail, text::Side::Left).empty()) return text.substr(0, line);
    return text;
  }

  void push_data(size_t offset, std::string_view text) {
    if (!text.empty()) tokens_.push_back(Token{TokenKind::Data, offset, std::string(text), 0, 0});
  }

  size_t skip_space(size_t i) const {
    while (i < s_.size()) {
      size_t j = i;
      if (!text::is_space(text::next_code_point(s_, j))) break;
      i = j;
    }
    return i;
  }

  // The end of a block tag at i: `-%}` also eats the whitespace after it, `%}` one newline
  // (trim_blocks), `+%}` nothing. Returns the offset after it, or npos.
  size_t block_end(size_t i) const {
    const std::string_view rest = s_.substr(i);
    if (rest.starts_with("-%}")) return skip_space(i + 3);
    if (rest.starts_with("+%}")) return i + 3;
    if (rest.starts_with("%}")) return i + 2 < s_.size() && s_[i + 2] == '\n' ? i + 3 : i + 2;
    return std::string_view::npos;
  }

  bool word_at(size_t i, std::string_view word) const {
    if (s_.substr(i, word.size()) != word) return false;
    const size_t after = i + word.size();
    return after >= s_.size() || !(std::isalnum(static_cast<unsigned char>(s_[after])) || s_[after] == '_');
  }

  // `{% raw %}`: the body starts after the tag (`-%}` eats whitespace; no trim_blocks here).
  bool raw_begin(size_t p, size_t& body) const {
    size_t i = skip_space(p);
    if (!word_at(i, "raw")) return false;
    i = skip_space(i + 3);
    const std::string_view rest = s_.substr(i);
    if (rest.starts_with("-%}")) body = skip_space(i + 3);
    else if (rest.starts_with("%}")) body = i + 2;
    else return false;
    return true;
  }

  size_t lex_raw(size_t open, size_t body) {
    for (size_t i = find_tag(body); i != std::string_view::npos; i = find_tag(i + 1)) {
      if (s_[i + 1] != '%') continue;
      size_t p = i + 2;
      const char sign = p < s_.size() && (s_[p] == '-' || s_[p] == '+') ? s_[p] : 0;
      if (sign) ++p;
      p = skip_space(p);
      if (!word_at(p, "endraw")) continue;
      const size_t end = block_end(skip_space(p + 6));
      if (end == std::string_view::npos) continue;
      push_data(body, control_whitespace(s_.substr(body, i - body), sign, true, body > 0 && s_[body - 1] == '\n'));
      return end;
    }
    error(open, "missing end of raw directive");
  }

  size_t lex_comment(size_t open, size_t p) {
    const size_t close = s_.find("#}", p);
    if (close == std::string_view::npos) error(open, "missing end of comment tag");
    if (close > p && s_[close - 1] == '-') return skip_space(close + 2);
    if (close > p && s_[close - 1] == '+') return close + 2;
    return close + 2 < s_.size() && s_[close + 2] == '\n' ? close + 3 : close + 2;
  }

  size_t lex_tag(size_t open, size_t p, bool block) {
    tokens_.push_back(Token{block ? TokenKind::BlockBegin : TokenKind::VariableBegin, open, {}, 0, 0});
    std::vector<std::pair<char, size_t>> brackets;  // open bracket and where
    size_t i = p;
    while (true) {
      i = skip_space(i);
      if (i >= s_.size())
        error(open, std::string("unexpected end of template inside a '") + (block ? "{%" : "{{") + "' tag");
      if (brackets.empty()) {
        // Inside brackets `}}` is two closing braces, as in jinja2.
        if (block) {
          const size_t end = block_end(i);
          if (end != std::string_view::npos) {
            tokens_.push_back(Token{TokenKind::BlockEnd, i, {}, 0, 0});
            return end;
          }
        } else if (s_.substr(i).starts_with("-}}")) {
          tokens_.push_back(Token{TokenKind::VariableEnd, i, {}, 0, 0});
          return skip_space(i + 3);
        } else if (s_.substr(i).starts_with("}}")) {
          tokens_.push_back(Token{TokenKind::VariableEnd, i, {}, 0, 0});
          return i + 2;
        }
      }
      i = lex_token(i, brackets);
    }
  }

  size_t lex_token(size_t i, std::vector<std::pair<char, size_t>>& brackets) {
    const auto c = static_cast<unsigned char>(s_[i]);
    if (std::isalpha(c) || c == '_' || c >= 0x80) {
      size_t j = i;
      while (j < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_' ||
                               static_cast<unsigned char>(s_[j]) >= 0x80))
        ++j;
      tokens_.push_back(Token{TokenKind::Name, i, std::string(s_.substr(i, j - i)), 0, 0});
      return j;
    }
    if (is_digit(static_cast<char>(c))) return lex_number(i);
    if (c == '\'' || c == '"') return lex_string(i);
    static const char* two[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : two) {
      if (s_.substr(i, 2) == op) {
        tokens_.push_back(Token{TokenKind::Operator, i, op, 0, 0});
        return i + 2;
      }
    }
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(static_cast<char>(c)) == std::string_view::npos)
      error(i, "unexpected character '" + std::string(1, static_cast<char>(c)) + "'");
    if (c == '(' || c == '[' || c == '{') {
      brackets.emplace_back(static_cast<char>(c), i);
    } else if (c == ')' || c == ']' || c == '}') {
      if (brackets.empty()) error(i, std::string("unexpected '") + static_cast<char>(c) + "'");
      const char want = brackets.back().first == '(' ? ')' : brackets.back().first == '[' ? ']' : '}';
      if (want != static_cast<char>(c))
        error(i, std::string("unexpected '") + static_cast<char>(c) + "', expected '" + want + "'");
      brackets.pop_back();
    }
    tokens_.push_back(Token{TokenKind::Operator, i, std::string(1, static_cast<char>(c)), 0, 0});
    return i + 1;
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  // Decimal digits with optional `_` separators, as Python writes them.
  size_t digits(size_t i) const {
    while (i < s_.size() && (is_digit(s_[i]) || (s_[i] == '_' && i + 1 < s_.size() && is_digit(s_[i + 1])))) ++i;
    return i;
  }

  size_t lex_number(size_t i) {
    std::string clean;
    auto collect = [&](size_t from, size_t to) {
      for (size_t k = from; k < to; ++k)
        if (s_[k] != '_') clean += s_[k];
    };
    const char prefix = i + 2 < s_.size() ? static_cast<char>(std::tolower(static_cast<unsigned char>(s_[i + 1]))) : 0;
    if (s_[i] == '0' && (prefix == 'x' || prefix == 'o' || prefix == 'b')) {
      const int base = prefix == 'x' ? 16 : prefix == 'o' ? 8 : 2;
      size_t j = i + 2;
      while (j < s_.size() && (s_[j] == '_' || std::isxdigit(static_cast<unsigned char>(s_[j])))) ++j;
      collect(i + 2, j);
      char* end = nullptr;
      errno = 0;
      const long long v = std::strtoll(clean.c_str(), &end, base);
      if (clean.empty() || *end != 0) error(i, "invalid number literal");
      if (errno == ERANGE) error(i, "integer literal too large");
      tokens_.push_back(Token{TokenKind::Integer, i, {}, v, 0});
      return j;
    }
    size_t j = digits(i);
    bool is_float = false;
    if (j + 1 < s_.size() && s_[j] == '.' && is_digit(s_[j + 1])) {
      is_float = true;
      j = digits(j + 1);
    }
    if (j < s_.size() && (s_[j] == 'e' || s_[j] == 'E')) {
      size_t k = j + 1;
      if (k < s_.size() && (s_[k] == '+' || s_[k] == '-')) ++k;
      if (k < s_.size() && is_digit(s_[k])) {
        is_float = true;
        j = digits(k);
      }
    }
    collect(i, j);
    if (is_float) {
      tokens_.push_back(Token{TokenKind::Float, i, {}, 0, std::strtod(clean.c_str(), nullptr)});
    } else {
      errno = 0;
      const long long v = std::strtoll(clean.c_str(), nullptr, 10);
      if (errno == ERANGE) error(i, "integer literal too large");
      tokens_.push_back(Token{TokenKind::Integer, i, {}, v, 0});
    }
    return j;
  }

  // Python's string escapes (jinja2 decodes literals with the unicode-escape codec).
  size_t lex_string(size_t start) {
    const char quote = s_[start];
    std::string value;
    size_t i = start + 1;
    while (true) {
      if (i >= s_.size()) error(start, "unterminated string literal");
      const char c = s_[i];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++i;
        continue;
      }
      if (i + 1 >= s_.size()) error(start, "unterminated string literal");
      const char e = s_[i + 1];
      i += 2;
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < n; ++k, ++i) {
            if (i >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i])))
              error(i - 2 - k, std::string("truncated \\") + e + " escape in a string literal");
            const char h = static_cast<char>(std::tolower(static_cast<unsigned char>(s_[i])));
            cp = cp * 16 + static_cast<char32_t>(h <= '9' ? h - '0' : h - 'a' + 10);
          }
          if (cp > 0x10FFFF) error(i - n - 2, "illegal Unicode character in a string literal");
          // A lone surrogate cannot be written as UTF-8; Python could not encode it either.
          text::append_utf8(value, cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            unsigned cp = static_cast<unsigned>(e - '0');
            for (int k = 0; k < 2 && i < s_.size() && s_[i] >= '0' && s_[i] <= '7'; ++k, ++i)
              cp = cp * 8 + static_cast<unsigned>(s_[i] - '0');
            text::append_utf8(value, cp);
          } else if (e == 'N') {
            error(i - 2, "\\N{...} escapes are not supported");
          } else {
            value += '\\';  // unknown escapes stay as written
            value += e;
          }
      }
    }
    tokens_.push_back(Token{TokenKind::String, start, std::move(value), 0, 0});
    return i + 1;
  }

  const SourceText& source_;
  std::string_view s_;
  const std::string& where_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(const SourceText& source, const std::string& where) { return Lexer(source, where).run(); }

}  // namespace anvil::chat::jinja
