#include "model/adapter_config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "model/tensor_shapes.h"
#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/json_reader.h"

namespace anvil::model {

namespace {

// PEFT matches a string target_modules with re.fullmatch. PCRE2 (bounded backtracking, unlike
// std::regex, which a pattern like "(.*)*x" sends into exponential time) anchored at both ends.
tokenizer::Regex full_match_regex(const std::string& pattern) { return tokenizer::Regex("\\A(?:" + pattern + ")\\z"); }

bool full_match(const tokenizer::Regex& re, const std::string& text) { return !re.find_all(text).empty(); }

}  // namespace

double AdapterConfig::scale() const { return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r; }

namespace {

template <typename T>
const T* pattern_value(const std::vector<std::pair<std::string, T>>& patterns, const std::string& module) {
  for (const auto& [key, value] : patterns)
    if (full_match(full_match_regex("(?:.*\\.)?(?:" + key + ")"), module)) return &value;
  return nullptr;
}

}  // namespace

int64_t AdapterConfig::rank_of(const std::string& module) const {
  const int64_t* v = pattern_value(rank_pattern, module);
  return v ? *v : r;
}

double AdapterConfig::scale_of(const std::string& module) const {
  const int64_t* rv = pattern_value(rank_pattern, module);
  const double* av = pattern_value(alpha_pattern, module);
  const double rank = static_cast<double>(rv ? *rv : r), a = av ? *av : alpha;
  return rslora ? a / std::sqrt(rank) : a / rank;
}

std::string peft_adapter_config_json(const AdapterConfig& a, const std::string& base_model, double dropout,
                                     bool init_lora_weights) {
  nlohmann::ordered_json cfg;
  cfg["peft_type"] = "LORA";
  cfg["task_type"] = "CAUSAL_LM";
  cfg["base_model_name_or_path"] = base_model;
  cfg["r"] = a.r;
  cfg["lora_alpha"] = a.alpha;
  cfg["lora_dropout"] = dropout;
  cfg["target_modules"] = a.target_modules;
  cfg["use_rslora"] = a.rslora;
  cfg["bias"] = "none";
  cfg["fan_in_fan_out"] = false;
  cfg["inference_mode"] = true;
  cfg["init_lora_weights"] = init_lora_weights;
  cfg["modules_to_save"] = nullptr;
  cfg["layers_to_transform"] = nullptr;
  cfg["layers_pattern"] = nullptr;
  cfg["rank_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : a.rank_pattern) cfg["rank_pattern"][k] = v;
  cfg["alpha_pattern"] = nlohmann::ordered_json::object();
  for (const auto& [k, v] : a.alpha_pattern) cfg["alpha_pattern"][k] = v;
  cfg["use_dora"] = false;
  cfg["revision"] = nullptr;
  return cfg.dump(2) + "\n";
}

AdapterConfig parse_adapter_config(const std::string& text, const std::string& where) {
  const nlohmann::json j = util::parse_json(text, where);
  const util::JsonFields f(j, where);
  if (const std::string type = f.string_or("peft_type", "LORA"); type != "LORA")
    fail(where, "peft_type '" + type + "' is not LORA");
  if (f.boolean_or("use_dora", false)) fail(where, "DoRA adapters are not supported");
  if (f.boolean_or("fan_in_fan_out", false)) fail(where, "fan_in_fan_out adapters are not supported");
  if (const nlohmann::json* t = f.find("target_parameters"); t && !t->empty())
    fail(where, "\"target_parameters\" (LoRA on fused 3-D expert weights, as PEFT writes for transformers 5's "
                "MoE layers) is not supported; target_modules adapters are");
  if (const nlohmann::json* v = f.find("modules_to_save"); v && !v->empty()) fail(where, "modules_to_save is not supported");
  AdapterConfig c;
  c.r = f.integer("r", 1, 1 << 16);
  c.alpha = f.number_or("lora_alpha", static_cast<double>(c.r), -1e9, 1e9);
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    const nlohmann::json* v = f.find(key);
    if (!v || v->empty()) continue;
    if (!v->is_object()) fail(where, std::string("\"") + key + "\" must map module names to numbers");
    for (const auto& [name, value] : v->items()) {
      const std::string what = std::string("\"") + key + "\" entry '" + name + "'";
      try {
        full_match_regex(name);
      } catch (const Error& e) {
        fail(where, what + " is not a valid pattern (" + e.problem() + ")");
      }
      if (!value.is_number() || !std::isfinite(value.get<double>())) fail(where, what + " must be a number");
      const double x = value.get<double>();
      if (key[0] == 'r') {
        if (!value.is_number_integer() || x < 1 || x > (1 << 16)) fail(where, what + " must be a rank in [1, 65536]");
        c.rank_pattern.emplace_back(name, value.get<int64_t>());
      } else {
        if (x < -1e9 || x > 1e9) fail(where, what + " is out of range");
        c.alpha_pattern.emplace_back(name, x);
      }
    }
  }
  c.rslora = f.boolean_or("use_rslora", false);
  if (const nlohmann::json* t = f.find("target_modules")) {
    if (t->is_string()) {
      c.target_regex = t->get<std::string>();
      try {
        full_match_regex(*c.target_regex);
      } catch (const Error& e) {
        fail(where, "\"target_modules\" is not a valid regular expression (" + e.problem() + ")");
      }
    } else if (t->is_array()) {
      for (const auto& m : *t) {
        if (!m.is_string() || m.get<std::string>().empty())
          fail(where, "\"target_modules\" must list module names, not " + util::json_brief(m));
        c.target_modules.push_back(m.get<std::string>());
      }
    } else {
      fail(where, "\"target_modules\" must be a list of module names or a regular expression");
    }
  }
  return c;
}

void check_adapter_targets(const AdapterConfig& adapter, const ModelConfig& model, const std::string& where) {
  std::set<std::string> modules;  // "model.layers.0.self_attn.q_proj", ...
  for (const ExpectedTensor& t : expected_tensors(model))
    if (t.name.ends_with(".weight") && t.shape.size() == 2) modules.insert(t.name.substr(0, t.name.size() - 7));
  if (adapter.target_regex) {
    const tokenizer::Regex re = full_match_regex(*adapter.target_regex);
    for (const auto& m : modules)
      if (full_match(re, m)) return;
    fail(where, "\"target_modules\" ('" + *adapter.target_regex + "') matches no module of the " + model.model_type +
                    " base model");
  }
  for (const auto& target : adapter.target_modules) {
    if (target == "all-linear") continue;
    bool found = false;
    for (const auto& m : modules) found |= m == target || m.ends_with("." + target);
    if (!found) fail(where, "target module '" + target + "' is not in the " + model.model_type + " base model");
  }
}

}  // namespace anvil::model
