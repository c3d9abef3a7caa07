#pragma once
// The Replace step that normalizers and decoders share: {"pattern": {"String": s} | {"Regex": r},
// "content": c}, every non-overlapping match left to right replaced by c.
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/regex.h"

namespace anvil::util {
class JsonFields;
}

namespace anvil::tokenizer {

class Replacement {
 public:
  // `f` holds the step's fields; errors name `where` and `context` (e.g. "normalizer.").
  static Replacement parse(const util::JsonFields& f, const std::string& where, const std::string& context);
  std::string apply(std::string_view text) const;

 private:
  std::string literal_, content_;
  std::optional<Regex> regex_;
};

}  // namespace anvil::tokenizer
