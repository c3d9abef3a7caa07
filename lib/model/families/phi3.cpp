// Phi-3: Llama's block with q/k/v fused into qkv_proj and gate/up into gate_up_proj in the
// checkpoint (and in GGUF); a sliding window on every layer when the config sets one.
#include <nlohmann/json.hpp>

#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  c.rope.original_max_position_embeddings =
      f.integer_or("original_max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions);
}

void write_config(const ModelConfig& c, nlohmann::ordered_json& j) {
  j["original_max_position_embeddings"] = c.rope.original_max_position_embeddings;
}

}  // namespace

const Architecture& phi3_family() {
  static constexpr HParam keys[] = {HParam::RopeOriginalContext, HParam::RmsEpsilon, HParam::RopeDimensionCount,
                                    HParam::RopeFreqBase, HParam::SlidingWindow};
  static const RoleNames names = [] {
    using R = TensorRole;
    RoleNames n = llama_hf_names();
    for (R r : {R::AttnQ, R::AttnQBias, R::AttnK, R::AttnKBias, R::AttnV, R::AttnVBias, R::FfnGate, R::FfnUp})
      set_name(n, r, "");
    set_name(n, R::AttnQkv, "model.layers.{L}.self_attn.qkv_proj.weight");
    set_name(n, R::FfnGateUp, "model.layers.{L}.mlp.gate_up_proj.weight");
    return n;
  }();
  static const Architecture a{
      .model_type = "phi3",
      .hf_class = "Phi3ForCausalLM",
      .gguf_arch = "phi3",
      .hf_names = &names,
      .gguf_keys = keys,
      .read_config = read_config,
      .write_config = write_config,
  };
  return a;
}

}  // namespace anvil::model
