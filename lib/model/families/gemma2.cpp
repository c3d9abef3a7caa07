// Gemma 2: Gemma plus norms on the attention and FFN outputs, soft-capped attention scores and
// logits, query_pre_attn_scalar, and a sliding window on every other layer (the first windowed).
#include "model/architecture.h"
#include "model/families/gemma_common.h"
#include "model/gguf_hparams.h"

namespace anvil::model {
namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  read_gemma_common(f, c);
  if (c.sliding_layers.empty()) periodic_sliding_layers(c, 2);  // configs without layer_types
}

void complete_gguf(ModelConfig& c) {
  periodic_sliding_layers(c, 2);  // llama.cpp: swa pattern 2
  gemma_gguf_query_scale(c, 46);
}

}  // namespace

RoleNames gemma2_hf_names() {
  using R = TensorRole;
  RoleNames n = llama_hf_names();
  set_name(n, R::AttnPostNorm, "model.layers.{L}.post_attention_layernorm.weight");
  set_name(n, R::FfnNorm, "model.layers.{L}.pre_feedforward_layernorm.weight");
  set_name(n, R::FfnPostNorm, "model.layers.{L}.post_feedforward_layernorm.weight");
  return n;
}

const Architecture& gemma2_family() {
  static constexpr HParam keys[] = {HParam::RmsEpsilon,       HParam::KeyLength,         HParam::ValueLength,
                                    HParam::AttnLogitSoftcap, HParam::FinalLogitSoftcap, HParam::SlidingWindow};
  static const RoleNames names = gemma2_hf_names();
  static const Architecture a{
      .model_type = "gemma2",
      .hf_class = "Gemma2ForCausalLM",
      .gguf_arch = "gemma2",
      .norm = NormKind::RmsPlusOne,
      .activation = Activation::GeluTanh,
      .sandwich_norms = true,
      .embeddings_times_sqrt_hidden = true,
      .tie_word_embeddings = true,
      .hf_names = &names,
      .gguf_norm_plus_one = true,
      .gguf_keys = keys,
      .read_config = read_config,
      .complete_gguf_config = complete_gguf,
      .write_config = write_gemma_common,
  };
  return a;
}

}  // namespace anvil::model
