// Gemma 3 (text): Gemma 2's block with (1 + w) q/k norms instead of soft-capping, five windowed
// layers to one global, and a separate rotary base for the windowed layers.
#include "model/architecture.h"
#include "model/families/gemma_common.h"
#include "model/gguf_hparams.h"

namespace anvil::model {

RoleNames gemma2_hf_names();  // families/gemma2.cpp

namespace {

void read_config(const util::JsonFields& f, ModelConfig& c) {
  read_gemma_common(f, c);
  // The Hub's older spelling: sliding_window_pattern, rope_local_base_freq and rope_theta (the
  // newer one, layer_types and per-type rope_parameters, config.cpp reads for every family).
  if (c.sliding_layers.empty()) periodic_sliding_layers(c, f.integer_or("sliding_window_pattern", 6, 1, kMaxLayers));
  if (!c.rope.sliding_theta) c.rope.sliding_theta = f.number_or("rope_local_base_freq", 10000.0, 1e-6, 1e30);
}

void complete_gguf(ModelConfig& c) {
  periodic_sliding_layers(c, 6);  // llama.cpp: swa pattern 6
  // Files from converters that predate rope.freq_base_swa: llama.cpp's fixed 10000.
  if (!c.rope.sliding_theta) c.rope.sliding_theta = 10000.0;
  gemma_gguf_query_scale(c, 62);
}

void write_config(const ModelConfig& c, nlohmann::ordered_json& j) {
  write_gemma_common(c, j);
  const double local = c.rope.sliding_theta.value_or(c.rope.theta);
  j["rope_local_base_freq"] = local;  // transformers 4.x
  nlohmann::ordered_json full{{"rope_theta", c.rope.theta}, {"rope_type", c.rope.type}};
  if (c.rope.type == "linear") full["factor"] = c.rope.factor;
  j["rope_parameters"] = {{"full_attention", full}, {"sliding_attention", {{"rope_theta", local}, {"rope_type", "default"}}}};
}

}  // namespace

const Architecture& gemma3_family() {
  static constexpr HParam keys[] = {HParam::RopeScalingLinear, HParam::RopeFreqBase, HParam::RopeFreqBaseSwa, HParam::RmsEpsilon,
                                    HParam::KeyLength,    HParam::ValueLength,     HParam::SlidingWindow,
                                    HParam::FinalLogitSoftcap};
  static const RoleNames names = [] {
    RoleNames n = gemma2_hf_names();
    set_name(n, TensorRole::AttnQNorm, "model.layers.{L}.self_attn.q_norm.weight");
    set_name(n, TensorRole::AttnKNorm, "model.layers.{L}.self_attn.k_norm.weight");
    return n;
  }();
  static const Architecture a{
      .model_type = "gemma3_text",
      .hf_class = "Gemma3ForCausalLM",
      .gguf_arch = "gemma3",
      .norm = NormKind::RmsPlusOne,
      .activation = Activation::GeluTanh,
      .qk_norm = true,
      .sandwich_norms = true,
      .embeddings_times_sqrt_hidden = true,
      .tie_word_embeddings = true,
      .hf_names = &names,
      .gguf_norm_plus_one = true,
      .gguf_keys = keys,
      .read_config = read_config,
      .complete_gguf_config = complete_gguf,
      .write_config = write_config,
  };
  return a;
}

}  // namespace anvil::model
