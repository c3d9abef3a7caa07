// A PEFT adapter_config.json: anvil::model::parse_adapter_config(json_text, where), then the
// accepted config's scale and its target check against a fixed Llama config (as `anvil` does
// before it loads the adapter).
#include <cmath>
#include <cstdint>

#include "fuzz_support.h"
#include "model/adapter_config.h"

namespace {

const anvil::model::ModelConfig& base_config() {
  static const auto c = anvil::model::ModelConfig::parse(
      R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256})",
      "base config.json");
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    anvil::model::AdapterConfig c =
        anvil::model::parse_adapter_config(std::string(anvil::fuzz::as_text(data, size)), "adapter_config.json");
    ANVIL_FUZZ_CHECK(c.r >= 1);
    ANVIL_FUZZ_CHECK(std::isfinite(c.scale()));
    anvil::model::check_adapter_targets(c, base_config(), "adapter_config.json");
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
