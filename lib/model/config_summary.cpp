#include "model/config_summary.h"

#include <cstdio>

namespace anvil::model {
namespace {

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

std::vector<std::string> family_features(const ModelConfig& c) {
  const Architecture& a = *c.arch;
  std::vector<std::string> f;
  if (a.norm == NormKind::RmsPlusOne) f.push_back("(1 + w) RMSNorm");
  if (a.norm == NormKind::LayerNorm) f.push_back("LayerNorm with bias");
  if (c.activation == Activation::GeluTanh) f.push_back("GELU (tanh)");
  if (c.activation == Activation::Gelu) f.push_back("GELU");
  if (!a.gated_ffn) f.push_back("ungated MLP");
  if (a.has(TensorRole::AttnQkv) || a.has(TensorRole::FfnGateUp)) f.push_back("fused qkv / gate_up in the checkpoint");
  if (a.qk_norm) f.push_back("q/k norms");
  if (a.sandwich_norms) f.push_back("post-attention and post-FFN norms");
  if (a.parallel_attention_ffn) f.push_back("parallel attention + MLP");
  if (c.attention_bias) f.push_back("q/k/v biases");
  if (c.rotary_dim != c.head_dim)
    f.push_back("partial rotary (" + std::to_string(c.rotary_dim) + " of " + std::to_string(c.head_dim) + " dims)");
  if (c.sliding_window) {
    int64_t windowed = 0;
    for (int64_t i = 0; i < c.num_layers; ++i) windowed += c.layer_is_sliding(i);
    f.push_back("sliding window " + std::to_string(*c.sliding_window) +
                (windowed == c.num_layers ? " on every layer"
                                          : " on " + std::to_string(windowed) + " of " + std::to_string(c.num_layers) + " layers"));
  }
  if (c.rope.sliding_theta) f.push_back("windowed layers' rope theta " + number(*c.rope.sliding_theta));
  if (c.query_pre_attn_scalar > 0 && c.query_pre_attn_scalar != static_cast<double>(c.head_dim))
    f.push_back("query scale 1/sqrt(" + number(c.query_pre_attn_scalar) + ")");
  if (c.attn_logit_softcap > 0) f.push_back("attention softcap " + number(c.attn_logit_softcap));
  if (c.final_logit_softcap > 0) f.push_back("logit softcap " + number(c.final_logit_softcap));
  if (a.embeddings_times_sqrt_hidden) f.push_back("embeddings x sqrt(hidden)");
  else if (c.embedding_scale != 1) f.push_back("embeddings x " + number(c.embedding_scale));
  if (c.residual_scale != 1) f.push_back("residual branches x " + number(c.residual_scale));
  if (c.logit_scale != 1) f.push_back("logits of h / " + number(c.logit_scale));
  if (a.is_moe()) {
    std::string moe = std::to_string(c.num_experts) + " experts (top " + std::to_string(c.num_experts_per_tok) +
                      (c.renormalize_top_k ? ", renormalised" : "") + ", " + std::to_string(c.expert_intermediate_size) + " wide)";
    if (a.shared_experts != SharedExperts::None)
      moe += " + shared " + std::to_string(c.shared_intermediate_size) + " wide" +
             (a.shared_experts == SharedExperts::SigmoidGated ? " (sigmoid-gated)" : "");
    int64_t dense = 0;
    for (int64_t i = 0; i < c.num_layers; ++i) dense += !c.layer_is_sparse(i);
    if (dense > 0) moe += ", " + std::to_string(dense) + " dense layer" + (dense > 1 ? "s" : "");
    f.push_back(moe);
  }
  return f;
}

}  // namespace anvil::model
