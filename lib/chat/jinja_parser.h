#pragma once
// Recursive descent over the lexer's tokens, following jinja2's grammar and operator precedence.
#include <memory>
#include <string>
#include <string_view>

#include "chat/jinja_ast.h"

namespace anvil::chat::jinja {

// A syntax error is anvil::Error(where, "line L, column C: ..."). Unknown filters and tests are
// syntax errors too, except inside an `if` (jinja2 defers those to run time).
std::shared_ptr<const Template> parse_template(std::string_view source, const std::string& where);

}  // namespace anvil::chat::jinja
