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
    set_name(n, R::TokenEmbedding, "model.embed_tokens.weight");
    set_name(n, R::OutputNorm, "model.final_layernorm.weight");
    set_name(n, R::OutputNormBias, "model.final_layernorm.bias");
    set_name(n, R::Output, "lm_head.weight");
    set_name(n, R::OutputBias, "lm_head.bias");
    set_name(n, R::AttnNorm, "model.layers.{L}.input_layernorm.weight");
    set_name(n, R::AttnNormBias, "model.layers.{L}.input_layernorm.bias");
    set_name(n, R::AttnQ, "model.layers.{L}.self_attn.q_proj.weight");
    set_name(n, R::AttnQBias, "model.layers.{L}.self_attn.q_proj.bias");
    set_name(n, R::AttnK, "model.layers.{L}.self_attn.k_proj.weight");
    set_name(n, R::AttnKBias, "model.layers.{L}.self_attn.k_proj.bias");
    set_name(n, R::AttnV, "model.layers.{L}.self_attn.v_proj.weight");
    set_name(n, R::AttnVBias, "model.layers.{L}.self_attn.v_proj.bias");
    set_name(n, R::AttnOut, "model.layers.{L}.self_attn.dense.weight");
    set_name(n, R::AttnOutBias, "model.layers.{L}.self_attn.dense.bias");
    set_name(n, R::FfnUp, "model.layers.{L}.mlp.fc1.weight");
    set_name(n, R::FfnUpBias, "model.layers.{L}.mlp.fc1.bias");
    set_name(n, R::FfnDown, "model.layers.{L}.mlp.fc2.weight");
    set_name(n, R::FfnDownBias, "model.layers.{L}.mlp.fc2.bias");
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
