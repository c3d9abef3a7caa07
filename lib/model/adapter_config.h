#pragma once
// adapter_config.json of a PEFT LoRA adapter, read with checked fields (no LibTorch, so the
// fuzzer and the light tools can use it).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace anvil::model {

struct AdapterConfig {
  int64_t r = 0;
  double alpha = 0;
  bool rslora = false;
  std::vector<std::string> target_modules;  // a list: module names matched as PEFT does (name or ".name" suffix)
  std::optional<std::string> target_regex;  // a string: a regular expression matched against the whole module name
  // Per-module rank and alpha (PEFT's rank_pattern / alpha_pattern, as anvil extract-lora and
  // mergekit-extract-lora write them): a key applies to a module whose name it matches at the
  // end, after a dot (PEFT's (.*\.)?(key)$); the first matching key wins.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  double scale() const;  // alpha / r, or alpha / sqrt(r) with rslora
  int64_t rank_of(const std::string& module) const;
  double scale_of(const std::string& module) const;
};

// adapter_config.json as PEFT writes it (its keys and defaults), for adapters anvil writes
// (training, extract-lora); rank_pattern/alpha_pattern name modules whose r / alpha differ.
std::string peft_adapter_config_json(const AdapterConfig& adapter, const std::string& base_model, double dropout,
                                     bool init_lora_weights);

// Throws anvil::Error naming `where` and the key for anything PEFT would refuse or anvil cannot apply.
AdapterConfig parse_adapter_config(const std::string& json_text, const std::string& where);

// PEFT refuses an adapter whose target modules match no module of the base model; so does anvil.
void check_adapter_targets(const AdapterConfig& adapter, const ModelConfig& model, const std::string& where);

}  // namespace anvil::model
