#pragma once
// tokenizer.json's "normalizer": the text rewrites applied to each stretch of input between added
// tokens before it is split and merged (SentencePiece-style files prepend and substitute U+2581
// here; others ask for NFC/NFKC).
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anvil::tokenizer {

class Normalizer {
 public:
  // `spec` is the "normalizer" value (null: none). A kind anvil cannot apply exactly is an
  // anvil::Error naming `where` and the kind.
  static Normalizer parse(const nlohmann::json& spec, const std::string& where);
  Normalizer();
  ~Normalizer();
  Normalizer(Normalizer&&) noexcept;
  Normalizer& operator=(Normalizer&&) noexcept;

  bool empty() const;
  std::string apply(std::string_view text) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  std::string where_;
};

// Replaces every non-overlapping occurrence of `from` (left to right) by `to`.
std::string replace_all(std::string_view text, std::string_view from, std::string_view to);

}  // namespace anvil::tokenizer
