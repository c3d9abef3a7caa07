#include "tokenizer/replacement.h"

#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {

Replacement Replacement::parse(const util::JsonFields& f, const std::string& where, const std::string& context) {
  Replacement r;
  const nlohmann::json* pattern = f.find("pattern");
  if (!pattern || !pattern->is_object()) f.error("pattern", "must be {\"String\": ...} or {\"Regex\": ...}");
  const util::JsonFields p(*pattern, where, context + "pattern.");
  if (p.has("String")) {
    r.literal_ = p.string_or("String", "");
  } else if (p.has("Regex")) {
    try {
      r.regex_.emplace(p.string_or("Regex", ""));
    } catch (const Error& e) {
      fail(where, context + "pattern.Regex: " + e.problem());
    }
  } else {
    f.error("pattern", "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  r.content_ = f.string_or("content", "");
  return r;
}

std::string Replacement::apply(std::string_view text) const {
  if (!regex_) return replace_all(text, literal_, content_);
  std::string out;
  size_t cursor = 0;
  for (auto [b, e] : regex_->find_all(text)) {
    out.append(text, cursor, b - cursor);
    out.append(content_);
    cursor = e;
  }
  out.append(text, cursor);
  return out;
}

}  // namespace anvil::tokenizer
