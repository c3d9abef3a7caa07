// Qwen3: Qwen2's layout without q/k/v biases, with per-head RMSNorms of q and k before the rotary
// embedding, and an explicit head_dim (often not hidden / heads).
#include "model/architecture.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {

void read_qwen_window_layers(const util::JsonFields& f, ModelConfig& c);  // families/qwen2.cpp

const Architecture& qwen3_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeFreqBase, HParam::RmsEpsilon, HParam::KeyLength, HParam::ValueLength};
  static const RoleNames names = [] {
    RoleNames n = llama_hf_names();
    set_name(n, TensorRole::AttnQNorm, "model.layers.{L}.self_attn.q_norm.weight");
    set_name(n, TensorRole::AttnKNorm, "model.layers.{L}.self_attn.k_norm.weight");
    return n;
  }();
  static const Architecture a{
      .model_type = "qwen3",
      .hf_class = "Qwen3ForCausalLM",
      .gguf_arch = "qwen3",
      .qk_norm = true,
      .sliding_window_default_on = false,
      .hf_names = &names,
      .gguf_keys = keys,
      .read_config = read_qwen_window_layers,
  };
  return a;
}

}  // namespace anvil::model
