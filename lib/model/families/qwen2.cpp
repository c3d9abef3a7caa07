// Qwen2 / Qwen2.5: Llama's layout with q/k/v biases and NeoX rotary (no q/k permutation in GGUF);
// the sliding window only when use_sliding_window says so.
#include "model/architecture.h"
#include "model/gguf_hparams.h"

namespace anvil::model {

const Architecture& qwen2_family() {
  static constexpr HParam keys[] = {HParam::RopeDimensionCount, HParam::RmsEpsilon, HParam::RopeFreqBase,
                                    HParam::VocabSize, HParam::KeyLength, HParam::ValueLength};
  static const RoleNames names = llama_hf_names();
  static const Architecture a{
      .model_type = "qwen2",
      .hf_class = "Qwen2ForCausalLM",
      .gguf_arch = "qwen2",
      .attention_bias = true,
      .sliding_window_default_on = false,
      .hf_names = &names,
      .gguf_keys = keys,
  };
  return a;
}

}  // namespace anvil::model
