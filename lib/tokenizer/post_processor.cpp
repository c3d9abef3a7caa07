#include "tokenizer/post_processor.h"

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::tokenizer {

PostProcessor PostProcessor::parse(const nlohmann::json& spec, const std::string& where,
                                   const std::function<std::optional<int32_t>(std::string_view)>& lookup,
                                   int64_t id_limit) {
  using nlohmann::json;
  PostProcessor pp;
  auto add = [&](const auto& self, const json& p, const std::string& context) -> void {
    if (p.is_null()) return;
    const util::JsonFields f(p, where, context);
    const std::string type = f.string_or("type", "");
    if (type == "Sequence") {
      const json* steps = f.find("processors");
      if (!steps || !steps->is_array()) f.error("processors", "must be a list");
      for (size_t i = 0; i < steps->size(); ++i) self(self, (*steps)[i], context + "processors[" + std::to_string(i) + "].");
    } else if (type == "ByteLevel") {
      // Only adjusts offsets, which anvil does not report.
    } else if (type == "TemplateProcessing") {
      pp.single_.clear();
      const json* single = f.find("single");
      if (single && !single->is_array()) f.error("single", "must be a list");
      const json* specials = f.find("special_tokens");
      if (specials && !specials->is_object()) f.error("special_tokens", "must be an object");
      for (const auto& item : single ? *single : json::array()) {
        if (!item.is_object()) f.error("single", "holds " + util::json_brief(item) + ", not a template item");
        if (item.contains("Sequence")) {
          pp.single_.push_back({true, {}});
          continue;
        }
        if (!item.contains("SpecialToken")) f.error("single", "holds an item that is neither Sequence nor SpecialToken");
        const std::string name =
            util::JsonFields(item["SpecialToken"], where, context + "single[].SpecialToken.").string_or("id", "");
        Item t{false, {}};
        if (specials && specials->contains(name) && (*specials)[name].is_object() && (*specials)[name].contains("ids")) {
          const json& ids = (*specials)[name]["ids"];
          if (!ids.is_array()) f.error("special_tokens", "['" + name + "'].ids must be a list");
          for (const auto& v : ids) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= id_limit)
              fail(where, context + "special_tokens['" + name + "'].ids holds " + util::json_brief(v) +
                              ", not an id of the vocabulary");
            t.ids.push_back(v.get<int32_t>());
          }
        } else if (auto id = lookup(name)) {
          t.ids.push_back(*id);
        } else {
          fail(where, context + "single: token '" + name + "' is not in the vocabulary");
        }
        pp.single_.push_back(std::move(t));
      }
    } else {
      fail(where, context + "type: unsupported post-processor '" + type + "' (supported: TemplateProcessing, ByteLevel, Sequence)");
    }
  };
  add(add, spec, "post_processor.");
  return pp;
}

std::vector<int32_t> PostProcessor::apply(std::vector<int32_t> ids) const {
  if (single_.empty()) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const auto& item : single_) {
    if (item.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
    else out.insert(out.end(), item.ids.begin(), item.ids.end());
  }
  return out;
}

bool PostProcessor::adds_special_tokens() const {
  for (const auto& item : single_)
    if (!item.is_sequence && !item.ids.empty()) return true;
  return false;
}

std::vector<int32_t> PostProcessor::prefix() const {
  std::vector<int32_t> out;
  for (const auto& item : single_) {
    if (item.is_sequence) break;
    out.insert(out.end(), item.ids.begin(), item.ids.end());
  }
  return out;
}

std::vector<int32_t> PostProcessor::suffix() const {
  std::vector<int32_t> out;
  bool after = false;
  for (const auto& item : single_) {
    if (item.is_sequence) after = true;
    else if (after) out.insert(out.end(), item.ids.begin(), item.ids.end());
  }
  return out;
}

}  // namespace anvil::tokenizer
