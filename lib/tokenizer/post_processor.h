#pragma once
// tokenizer.json's "post_processor": the special tokens added around an encoded sequence when
// special tokens are asked for (TemplateProcessing's "single" template, e.g. "<s> $A").
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace anvil::tokenizer {

class PostProcessor {
 public:
  // `lookup` finds a token's id by its text; `id_limit` bounds the ids the file may name.
  static PostProcessor parse(const nlohmann::json& spec, const std::string& where,
                             const std::function<std::optional<int32_t>(std::string_view)>& lookup, int64_t id_limit);

  std::vector<int32_t> apply(std::vector<int32_t> ids) const;
  bool adds_special_tokens() const;
  // The ids the template puts before / after the sequence.
  std::vector<int32_t> prefix() const;
  std::vector<int32_t> suffix() const;

 private:
  struct Item {
    bool is_sequence;
    std::vector<int32_t> ids;
  };
  std::vector<Item> single_;
};

}  // namespace anvil::tokenizer
