// Mixtral: Llama's attention, a sparse MoE FFN in every layer (softmax router, top-k renormalised).
#include <nlohmann/json.hpp>

#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

RoleNames names() {
  using R = TensorRole;
  RoleNames n = llama_hf_names();
  for (R r : {R::FfnGate, R::FfnUp, R::FfnDown}) set_name(n, r, "");
  set_name(n, R::MoeRouter, "model.layers.{L}.block_sparse_moe.gate.weight");
  set_name(n, R::ExpertGate, "model.layers.{L}.block_sparse_moe.experts.{E}.w1.weight");
  set_name(n, R::ExpertUp, "model.layers.{L}.block_sparse_moe.experts.{E}.w3.weight");
  set_name(n, R::ExpertDown, "model.layers.{L}.block_sparse_moe.experts.{E}.w2.weight");
  return n;
}

void read_config(const util::JsonFields& f, ModelConfig& c) {
  c.num_experts = f.integer("num_local_experts", 1, kMaxExperts);
  c.num_experts_per_tok = f.integer("num_experts_per_tok", 1, kMaxExperts);
  c.expert_intermediate_size = c.intermediate_size;
  c.renormalize_top_k = true;  // transformers' Mixtral router always renormalises (no norm_topk_prob)
}

void write_config(const ModelConfig& c, nlohmann::ordered_json& j) {
  j["num_local_experts"] = c.num_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
}

}  // namespace

const Architecture& mixtral_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeDimensionCount, HParam::RmsEpsilon,     HParam::RopeFreqBase,
                                    HParam::VocabSize,          HParam::KeyLength,      HParam::ValueLength,
                                    HParam::ExpertCount,        HParam::ExpertUsedCount};
  static const RoleNames n = names();
  static const Architecture a{
      .model_type = "mixtral",
      .hf_class = "MixtralForCausalLM",
      .gguf_arch = "llama",
      .ffn = FfnKind::SparseMoE,
      .hf_names = &n,
      .gguf_permute_qk = true,
      .gguf_keys = keys,
      .read_config = read_config,
      .write_config = write_config,
  };
  return a;
}

}  // namespace anvil::model
