// Qwen2 / Qwen2.5: Llama's layout with q/k/v biases and NeoX rotary (no q/k permutation in GGUF);
// the sliding window only when use_sliding_window says so.
#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {

// Configs without layer_types: transformers (Qwen2, Qwen3) windows the layers from
// max_window_layers (default 28) on.
void read_qwen_window_layers(const util::JsonFields& f, ModelConfig& c) {
  if (!c.sliding_window || !c.sliding_layers.empty()) return;
  const int64_t first = f.integer_or("max_window_layers", 28, 0, kMaxLayers);
  c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
  for (int64_t i = first; i < c.num_layers; ++i) c.sliding_layers[static_cast<size_t>(i)] = true;
}

const Architecture& qwen2_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeDimensionCount, HParam::RmsEpsilon, HParam::RopeFreqBase,
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
      .read_config = read_qwen_window_layers,
  };
  return a;
}

}  // namespace anvil::model
