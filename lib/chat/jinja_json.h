#pragma once
// Between nlohmann::json and template values: the messages and variables a caller passes in, and
// the tojson filter, which transformers defines as Python's json.dumps(x, ensure_ascii=False, ...).
#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "chat/jinja_value.h"

namespace anvil::chat::jinja {

// Objects keep the order nlohmann gives them: insertion order for ordered_json, sorted for json.
// A Failure for nesting past kMaxNesting or an unsigned integer past INT64_MAX.
Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

// json.dumps's options.
struct JsonStyle {
  std::optional<std::string> indent;  // nullopt: everything on one line
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};

// A Failure for what json.dumps refuses (undefined, namespaces, callables, bad keys) and for output
// beyond `limit` bytes.
void append_json(std::string& out, const Value& v, const JsonStyle& style, size_t limit);

}  // namespace anvil::chat::jinja
