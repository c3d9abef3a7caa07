// config.json of a Hugging Face model: ModelConfig::parse(text, where).
#include <cstdint>

#include "fuzz_support.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto c = anvil::model::ModelConfig::parse(std::string(anvil::fuzz::as_text(data, size)), "config.json");
    ANVIL_FUZZ_CHECK(c.arch != nullptr);
    ANVIL_FUZZ_CHECK(c.hidden_size > 0 && c.num_heads > 0 && c.num_kv_heads > 0 && c.head_dim > 0);
    ANVIL_FUZZ_CHECK(c.num_heads % c.num_kv_heads == 0);
    // The llama3 rotary divisors are computed from the parsed numbers (head_dim bounded here
    // only to keep a run short).
    if (c.rope.type == "llama3" && c.head_dim <= 4096) (void)anvil::model::llama3_rope_divisors(c.rope, c.head_dim);
  } catch (const anvil::Error& e) {
    anvil::fuzz::rejected(e);
  }
  return 0;
}
