// DeepSeekMoE (v1, remote code "deepseek"): Llama's attention, the first layers dense, then
// fine-grained routed experts (softmax top-k) plus always-on shared experts, summed.
#include <nlohmann/json.hpp>

#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  c.num_experts = f.integer("n_routed_experts", 1, kMaxExperts);
  c.num_experts_per_tok = f.integer("num_experts_per_tok", 1, kMaxExperts);
  c.expert_intermediate_size = f.integer("moe_intermediate_size", 1, kMaxWidth);
  c.num_shared_experts = f.integer_or("n_shared_experts", 0, 0, kMaxExperts);
  c.shared_intermediate_size = c.num_shared_experts * c.expert_intermediate_size;
  c.first_dense_layers = f.integer_or("first_k_dense_replace", 0, 0, c.num_layers);
  if (const std::string s = f.string_or("scoring_func", "softmax"); s != "softmax")
    f.error("scoring_func", "is '" + s + "' (only softmax is supported)");
  // modeling_deepseek: layer i is sparse when i >= first_k_dense_replace and i % moe_layer_freq == 0.
  const int64_t freq = f.integer_or("moe_layer_freq", 1, 1, kMaxLayers);
  if (freq != 1) f.error("moe_layer_freq", "must be 1 (llama.cpp's GGUF has no key for sparser layouts)");
  c.sparse_layers.assign(static_cast<size_t>(c.num_layers), false);
  for (int64_t i = c.first_dense_layers; i < c.num_layers; ++i) c.sparse_layers[static_cast<size_t>(i)] = true;
}

void complete_gguf(ModelConfig& c) {
  c.shared_intermediate_size = c.num_shared_experts * c.expert_intermediate_size;
  c.sparse_layers.assign(static_cast<size_t>(c.num_layers), false);
  for (int64_t i = c.first_dense_layers; i < c.num_layers; ++i) c.sparse_layers[static_cast<size_t>(i)] = true;
}

void write_config(const ModelConfig& c, nlohmann::ordered_json& j) {
  j["n_routed_experts"] = c.num_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["moe_intermediate_size"] = c.expert_intermediate_size;
  j["n_shared_experts"] = c.num_shared_experts;
  j["first_k_dense_replace"] = c.first_dense_layers;
  j["moe_layer_freq"] = 1;
  j["scoring_func"] = "softmax";
}

}  // namespace

const Architecture& deepseek_family() {
  static constexpr HParam keys[] = {HParam::RopeFreqBase,           HParam::RmsEpsilon,
                                    HParam::ExpertCount,            HParam::ExpertUsedCount,
                                    HParam::ExpertGatingFunc,       HParam::RopeDimensionCount,
                                    HParam::RopeScalingTypeNone,    HParam::LeadingDenseBlockCount,
                                    HParam::VocabSize,              HParam::ExpertFeedForwardLength,
                                    HParam::ExpertWeightsScale,     HParam::ExpertSharedCount};
  static const RoleNames names = [] {
    using R = TensorRole;
    RoleNames n = llama_hf_names_with_mlp_experts();
    set_name(n, R::SharedGate, "model.layers.{L}.mlp.shared_experts.gate_proj.weight");
    set_name(n, R::SharedUp, "model.layers.{L}.mlp.shared_experts.up_proj.weight");
    set_name(n, R::SharedDown, "model.layers.{L}.mlp.shared_experts.down_proj.weight");
    return n;
  }();
  static const Architecture a{
      .model_type = "deepseek",
      .hf_class = "DeepseekForCausalLM",
      .gguf_arch = "deepseek",
      .ffn = FfnKind::SparseMoE,
      .shared_experts = SharedExperts::Plain,
      .renormalize_top_k = false,
      .hf_names = &names,
      .gguf_permute_qk = true,
      .gguf_keys = keys,
      .read_config = read_config,
      .complete_gguf_config = complete_gguf,
      .write_config = write_config,
  };
  return a;
}

}  // namespace anvil::model
