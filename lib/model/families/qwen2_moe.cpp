// Qwen2-MoE (Qwen1.5-MoE): Qwen2's attention, routed experts (softmax top-k, not renormalised by
// default) plus one shared expert gated by sigmoid(shared_expert_gate(x)).
#include <nlohmann/json.hpp>

#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  c.num_experts = f.integer("num_experts", 1, kMaxExperts);
  c.num_experts_per_tok = f.integer("num_experts_per_tok", 1, kMaxExperts);
  c.expert_intermediate_size = f.integer("moe_intermediate_size", 1, kMaxWidth);
  c.shared_intermediate_size = f.integer("shared_expert_intermediate_size", 1, kMaxWidth);
  c.attention_bias = f.boolean_or("qkv_bias", c.attention_bias);
  // transformers: a layer is sparse unless listed in mlp_only_layers, every decoder_sparse_step-th.
  const int64_t step = f.integer_or("decoder_sparse_step", 1, 1, kMaxLayers);
  c.sparse_layers.assign(static_cast<size_t>(c.num_layers), false);
  for (int64_t i = 0; i < c.num_layers; ++i) c.sparse_layers[static_cast<size_t>(i)] = (i + 1) % step == 0;
  if (const auto* only = f.find("mlp_only_layers")) {
    if (!only->is_array()) f.error("mlp_only_layers", "must be a list of layer indices");
    for (const auto& v : *only) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.num_layers)
        f.error("mlp_only_layers", "holds " + util::json_brief(v) + ", not a layer index");
      c.sparse_layers[v.get<size_t>()] = false;
    }
  }
}

void write_config(const ModelConfig& c, nlohmann::ordered_json& j) {
  j["num_experts"] = c.num_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["moe_intermediate_size"] = c.expert_intermediate_size;
  j["shared_expert_intermediate_size"] = c.shared_intermediate_size;
  j["qkv_bias"] = c.attention_bias;
  j["decoder_sparse_step"] = 1;
  auto& dense = j["mlp_only_layers"] = nlohmann::ordered_json::array();
  for (int64_t i = 0; i < c.num_layers; ++i)
    if (!c.layer_is_sparse(i)) dense.push_back(i);
}

}  // namespace

const Architecture& qwen2_moe_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeFreqBase,    HParam::RmsEpsilon,
                                    HParam::ExpertCount,     HParam::ExpertUsedCount,
                                    HParam::ExpertFeedForwardLength, HParam::ExpertSharedFeedForwardLength};
  static const RoleNames names = [] {
    using R = TensorRole;
    RoleNames n = llama_hf_names_with_mlp_experts();
    set_name(n, R::SharedGate, "model.layers.{L}.mlp.shared_expert.gate_proj.weight");
    set_name(n, R::SharedUp, "model.layers.{L}.mlp.shared_expert.up_proj.weight");
    set_name(n, R::SharedDown, "model.layers.{L}.mlp.shared_expert.down_proj.weight");
    set_name(n, R::SharedExpertGate, "model.layers.{L}.mlp.shared_expert_gate.weight");
    return n;
  }();
  static const Architecture a{
      .model_type = "qwen2_moe",
      .hf_class = "Qwen2MoeForCausalLM",
      .gguf_arch = "qwen2moe",
      .attention_bias = true,
      .sliding_window_default_on = false,
      .ffn = FfnKind::SparseMoE,
      .shared_experts = SharedExperts::SigmoidGated,
      .renormalize_top_k = false,
      .hf_names = &names,
      .gguf_keys = keys,
      .read_config = read_config,
      .write_config = write_config,
  };
  return a;
}

}  // namespace anvil::model
