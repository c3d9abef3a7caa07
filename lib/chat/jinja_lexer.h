#pragma once
// Splits a template into text and tag tokens the way jinja2's lexer does under transformers'
// settings (trim_blocks, lstrip_blocks, keep_trailing_newline off): whitespace control is applied
// here, so the parser sees text exactly as it will be printed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace anvil::chat::jinja {

enum class TokenKind : uint8_t {
  Data,           // literal text between tags
  VariableBegin,  // {{
  VariableEnd,    // }}
  BlockBegin,     // {%
  BlockEnd,       // %}
  Name,
  Integer,
  Float,
  String,    // text is the decoded value
  Operator,  // text is the symbol: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
  End,
};

struct Token {
  TokenKind kind = TokenKind::End;
  size_t offset = 0;  // into the normalized source
  std::string text;
  int64_t integer = 0;
  double number = 0;
};

// The normalized template source (\r\n and \r read as \n, one trailing newline dropped, as jinja2
// does before lexing) and the line/column of its byte offsets, for messages.
class SourceText {
 public:
  explicit SourceText(std::string_view raw);
  const std::string& text() const { return text_; }
  std::pair<int, int> line_column(size_t offset) const;  // 1-based; columns count code points
  std::string at(size_t offset) const;                   // "line L, column C"

 private:
  std::string text_;
  std::vector<size_t> line_starts_;
};

// A syntax error is anvil::Error(where, "line L, column C: ...").
std::vector<Token> tokenize(const SourceText& source, const std::string& where);

}  // namespace anvil::chat::jinja
