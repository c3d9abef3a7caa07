// Phi-2 (PhiForCausalLM): attention and an ungated GELU MLP in parallel off one LayerNorm,
// biases everywhere, a partial rotary embedding, and a final LayerNorm and LM head with biases.
#include "model/architecture.h"
#include "model/config.h"
#include "model/gguf_hparams.h"
#include "util/json_reader.h"

namespace anvil::model {
namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  if (f.boolean_or("qk_layernorm", false)) f.error("qk_layernorm", "is true (Phi with q/k LayerNorms is not supported)");
}

}  // namespace

const Architecture& phi2_family() {
  static constexpr HParam keys[] = {HParam::LayerNormEpsilon, HParam::RopeDimensionCount};
  static const RoleNames names = [] {
    using R = TensorRole;
    RoleNames n{};
    auto set = [&](R r, std::string_view v) { n[static_cast<size_t>(r)] = v; };
    set(R::TokenEmbedding, "model.embed_tokens.weight");
    set(R::OutputNorm, "model.final_layernorm.weight");
    set(R::OutputNormBias, "model.final_layernorm.bias");
    set(R::Output, "lm_head.weight");
    set(R::OutputBias, "lm_head.bias");
    set(R::AttnNorm, "model.layers.{L}.input_layernorm.weight");
    set(R::AttnNormBias, "model.layers.{L}.input_layernorm.bias");
    set(R::AttnQ, "model.layers.{L}.self_attn.q_proj.weight");
    set(R::AttnQBias, "model.layers.{L}.self_attn.q_proj.bias");
    set(R::AttnK, "model.layers.{L}.self_attn.k_proj.weight");
    set(R::AttnKBias, "model.layers.{L}.self_attn.k_proj.bias");
    set(R::AttnV, "model.layers.{L}.self_attn.v_proj.weight");
    set(R::AttnVBias, "model.layers.{L}.self_attn.v_proj.bias");
    set(R::AttnOut, "model.layers.{L}.self_attn.dense.weight");
    set(R::AttnOutBias, "model.layers.{L}.self_attn.dense.bias");
    set(R::FfnUp, "model.layers.{L}.mlp.fc1.weight");
    set(R::FfnUpBias, "model.layers.{L}.mlp.fc1.bias");
    set(R::FfnDown, "model.layers.{L}.mlp.fc2.weight");
    set(R::FfnDownBias, "model.layers.{L}.mlp.fc2.bias");
    return n;
  }();
  static const Architecture a{
      .model_type = "phi",
      .hf_class = "PhiForCausalLM",
      .gguf_arch = "phi2",
      .norm = NormKind::LayerNorm,
      .activation = Activation::GeluTanh,
      .gated_ffn = false,
      .parallel_attention_ffn = true,
      .attention_bias = true,
      .hf_names = &names,
      .gguf_keys = keys,
      .read_config = read_config,
  };
  return a;
}

}  // namespace anvil::model
