#include "model/gguf_hparams.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace anvil::model {
namespace {

using io::GgufValue;

GgufValue u32(int64_t v) { return GgufValue::u32(static_cast<uint32_t>(v)); }
GgufValue f32(double v) { return GgufValue::f32(static_cast<float>(v)); }

// Checked reads of one file's {arch}.* keys.
class KeyReader {
 public:
  KeyReader(const io::GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)), where_(f.path().string()) {}
  const GgufValue* find(const std::string& key) const { return f_.find(arch_ + "." + key); }
  std::string full(const std::string& key) const { return arch_ + "." + key; }

  std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->as_int() || *v->as_int() < lo || *v->as_int() > hi)
      fail(where_, full(key) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *v->as_int();
  }
  int64_t required(const std::string& key, int64_t lo, int64_t hi) const {
    auto v = integer(key, lo, hi);
    if (!v) fail(where_, "missing " + full(key));
    return *v;
  }
  std::optional<double> number(const std::string& key, double lo, double hi) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (!v->as_float() || !std::isfinite(*v->as_float()) || *v->as_float() < lo || *v->as_float() > hi)
      fail(where_, full(key) + " must be a finite number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *v->as_float();
  }
  [[noreturn]] void bad(const std::string& key, const std::string& problem) const { fail(where_, full(key) + " " + problem); }
  const std::string& where() const { return where_; }

 private:
  const io::GgufFile& f_;
  std::string arch_, where_;
};

const char* key_name(HParam p) {
  switch (p) {
    case HParam::RmsEpsilon: return "attention.layer_norm_rms_epsilon";
    case HParam::LayerNormEpsilon: return "attention.layer_norm_epsilon";
    case HParam::RopeFreqBase: return "rope.freq_base";
    case HParam::RopeDimensionCount: return "rope.dimension_count";
    case HParam::KeyLength: return "attention.key_length";
    case HParam::ValueLength: return "attention.value_length";
    case HParam::VocabSize: return "vocab_size";
    case HParam::ExpertCount: return "expert_count";
    case HParam::ExpertUsedCount: return "expert_used_count";
    case HParam::ExpertFeedForwardLength: return "expert_feed_forward_length";
    case HParam::ExpertSharedFeedForwardLength: return "expert_shared_feed_forward_length";
    case HParam::ExpertSharedCount: return "expert_shared_count";
    case HParam::ExpertGatingFunc: return "expert_gating_func";
    case HParam::ExpertWeightsScale: return "expert_weights_scale";
    case HParam::LeadingDenseBlockCount: return "leading_dense_block_count";
    case HParam::SlidingWindow: return "attention.sliding_window";
    case HParam::AttnLogitSoftcap: return "attn_logit_softcapping";
    case HParam::FinalLogitSoftcap: return "final_logit_softcapping";
    case HParam::RopeFreqBaseSwa: return "rope.freq_base_swa";
    case HParam::RopeScalingTypeNone: return "rope.scaling.type";
    case HParam::RopeScalingLinear: return "rope.scaling.type";
    case HParam::RopeOriginalContext: return "rope.scaling.original_context_length";
    case HParam::EmbeddingScale: return "embedding_scale";
    case HParam::ResidualScale: return "residual_scale";
    case HParam::LogitScale: return "logit_scale";
  }
  return "";
}

bool explicit_head_dim(const ModelConfig& c) { return c.head_dim * c.num_heads != c.hidden_size; }

// nullopt: llama.cpp writes nothing for this config.
std::optional<GgufValue> write_one(HParam p, const ModelConfig& c) {
  switch (p) {
    case HParam::RmsEpsilon:
    case HParam::LayerNormEpsilon: return f32(c.rms_norm_eps);
    case HParam::RopeFreqBase: return f32(c.rope.theta);
    case HParam::RopeDimensionCount: return u32(c.rotary_dim);
    case HParam::KeyLength:
    case HParam::ValueLength: return explicit_head_dim(c) ? std::optional(u32(c.head_dim)) : std::nullopt;
    case HParam::VocabSize: return u32(c.vocab_size);
    case HParam::ExpertCount: return u32(c.num_experts);
    case HParam::ExpertUsedCount: return u32(c.num_experts_per_tok);
    case HParam::ExpertFeedForwardLength: return u32(c.expert_intermediate_size);
    case HParam::ExpertSharedFeedForwardLength: return u32(c.shared_intermediate_size);
    case HParam::ExpertSharedCount: return u32(c.num_shared_experts);
    case HParam::ExpertGatingFunc: return u32(1);
    case HParam::ExpertWeightsScale: return f32(1.0);
    case HParam::LeadingDenseBlockCount: return u32(c.first_dense_layers);
    case HParam::SlidingWindow: return u32(c.sliding_window.value_or(0));
    // Written when set, as the converters do (Gemma 3's only when its config has one).
    case HParam::AttnLogitSoftcap: return c.attn_logit_softcap > 0 ? std::optional(f32(c.attn_logit_softcap)) : std::nullopt;
    case HParam::FinalLogitSoftcap: return c.final_logit_softcap > 0 ? std::optional(f32(c.final_logit_softcap)) : std::nullopt;
    case HParam::RopeFreqBaseSwa: return f32(c.rope.sliding_theta.value_or(c.rope.theta));
    case HParam::RopeScalingTypeNone: return GgufValue::str(c.rope.type == "linear" ? "linear" : "none");
    case HParam::RopeScalingLinear: return c.rope.type == "linear" ? std::optional(GgufValue::str("linear")) : std::nullopt;
    case HParam::RopeOriginalContext: return u32(c.rope.original_max_position_embeddings);
    case HParam::EmbeddingScale: return f32(c.embedding_scale);
    case HParam::ResidualScale: return f32(c.residual_scale);
    case HParam::LogitScale: return f32(c.logit_scale);
  }
  return std::nullopt;
}

void read_one(HParam p, const KeyReader& r, ModelConfig& c) {
  const std::string key = key_name(p);
  switch (p) {
    case HParam::RmsEpsilon:
    case HParam::LayerNormEpsilon:
      c.rms_norm_eps = r.number(key, 1e-30, 0.5).value_or(c.rms_norm_eps);
      return;
    case HParam::RopeFreqBase: c.rope.theta = r.number(key, 1e-6, 1e30).value_or(c.rope.theta); return;
    case HParam::RopeDimensionCount: c.rotary_dim = r.integer(key, 0, kMaxWidth).value_or(c.rotary_dim); return;
    case HParam::KeyLength: c.head_dim = r.integer(key, 1, kMaxWidth).value_or(c.head_dim); return;
    case HParam::ValueLength:
      if (auto v = r.integer(key, 1, kMaxWidth); v && *v != c.head_dim) r.bad(key, "differs from key_length (not supported)");
      return;
    case HParam::VocabSize:
      if (auto v = r.integer(key, 1, kMaxVocab); v && *v != c.vocab_size)
        r.bad(key, "is " + std::to_string(*v) + " but token_embd.weight has " + std::to_string(c.vocab_size) + " rows");
      return;
    case HParam::ExpertCount: c.num_experts = r.integer(key, 0, kMaxExperts).value_or(0); return;
    case HParam::ExpertUsedCount: c.num_experts_per_tok = r.integer(key, 0, kMaxExperts).value_or(0); return;
    case HParam::ExpertFeedForwardLength:
      c.expert_intermediate_size = r.integer(key, 1, kMaxWidth).value_or(c.expert_intermediate_size);
      return;
    case HParam::ExpertSharedFeedForwardLength:
      c.shared_intermediate_size = r.integer(key, 0, kMaxWidth).value_or(c.shared_intermediate_size);
      return;
    case HParam::ExpertSharedCount: c.num_shared_experts = r.integer(key, 0, kMaxExperts).value_or(0); return;
    case HParam::ExpertGatingFunc:
      if (auto v = r.integer(key, 0, 1 << 20); v && *v != 1) r.bad(key, "is " + std::to_string(*v) + " (only 1, softmax, is supported)");
      return;
    case HParam::ExpertWeightsScale:
      if (auto v = r.number(key, -1e30, 1e30); v && *v != 1.0) r.bad(key, "must be 1 (scaled routed experts are not supported)");
      return;
    case HParam::LeadingDenseBlockCount:
      c.first_dense_layers = r.integer(key, 0, kMaxLayers).value_or(0);
      return;
    case HParam::SlidingWindow:
      if (auto v = r.integer(key, 0, kMaxPositions)) c.sliding_window = *v ? std::optional<int64_t>(*v) : std::nullopt;
      return;
    case HParam::AttnLogitSoftcap: c.attn_logit_softcap = r.number(key, 0, 1e30).value_or(0); return;
    case HParam::FinalLogitSoftcap: c.final_logit_softcap = r.number(key, 0, 1e30).value_or(0); return;
    case HParam::RopeFreqBaseSwa:
      if (auto v = r.number(key, 1e-6, 1e30)) c.rope.sliding_theta = *v;
      return;
    case HParam::RopeScalingTypeNone:
    case HParam::RopeScalingLinear: {
      const GgufValue* v = r.find(key);
      if (!v || (v->as_string() && *v->as_string() == "none")) return;
      if (!v->as_string() || *v->as_string() != "linear")
        r.bad(key, "names a rotary scaling anvil does not support here (none, linear)");
      c.rope.type = "linear";
      c.rope.factor = r.number("rope.scaling.factor", 1e-6, 1e6).value_or(0);
      if (c.rope.factor == 0) fail(r.where(), "missing " + r.full("rope.scaling.factor") + " (rope.scaling.type is linear)");
      return;
    }
    case HParam::RopeOriginalContext:
      c.rope.original_max_position_embeddings =
          r.integer(key, 1, kMaxPositions).value_or(c.rope.original_max_position_embeddings);
      return;
    case HParam::EmbeddingScale: c.embedding_scale = r.number(key, 1e-30, 1e30).value_or(1); return;
    case HParam::ResidualScale: c.residual_scale = r.number(key, 1e-30, 1e30).value_or(1); return;
    case HParam::LogitScale: c.logit_scale = r.number(key, 1e-30, 1e30).value_or(1); return;
  }
}

}  // namespace

GgufMetadata write_gguf_hparams(const ModelConfig& c) {
  const std::string a(c.arch->gguf_arch);
  GgufMetadata m{
      {a + ".context_length", u32(c.max_position_embeddings)},
      {a + ".embedding_length", u32(c.hidden_size)},
      {a + ".block_count", u32(c.num_layers)},
      {a + ".feed_forward_length", u32(c.intermediate_size)},
      {a + ".attention.head_count", u32(c.num_heads)},
      {a + ".attention.head_count_kv", u32(c.num_kv_heads)},
  };
  for (HParam p : c.arch->gguf_keys)
    if (auto v = write_one(p, c)) m.emplace_back(a + "." + key_name(p), std::move(*v));
  if (c.rope.type == "linear") {
    const auto& keys = c.arch->gguf_keys;
    if (std::find(keys.begin(), keys.end(), HParam::RopeScalingLinear) == keys.end() &&
        std::find(keys.begin(), keys.end(), HParam::RopeScalingTypeNone) == keys.end())
      fail(c.model_type + " config", "linear rotary scaling has no GGUF form in llama.cpp's " + a + " models");
    m.emplace_back(a + ".rope.scaling.factor", f32(c.rope.factor));
  }
  return m;
}

void check_gguf_can_describe(const ModelConfig& c, const std::string& where) {
  ModelConfig read_back = c;  // what the GGUF reader would fix for the family
  if (c.arch->complete_gguf_config) c.arch->complete_gguf_config(read_back);
  for (int64_t i = 0; i < c.num_layers; ++i)
    if (read_back.layer_is_sliding(i) != c.layer_is_sliding(i))
      fail(where, "layer " + std::to_string(i) + " is " + (c.layer_is_sliding(i) ? "windowed" : "global") +
                      ", but llama.cpp fixes the " + std::string(c.arch->gguf_arch) +
                      " window pattern (a GGUF would say otherwise; see layer_types)");
  if (read_back.query_pre_attn_scalar != c.query_pre_attn_scalar)
    fail(where, "query_pre_attn_scalar " + std::to_string(static_cast<int64_t>(c.query_pre_attn_scalar)) +
                    " is not what llama.cpp assumes for this " + std::string(c.arch->gguf_arch) + " model");
  if (c.arch->is_moe() && c.renormalize_top_k != c.arch->renormalize_top_k)
    fail(where, std::string("norm_topk_prob is ") + (c.renormalize_top_k ? "true" : "false") +
                    ", which llama.cpp's " + std::string(c.arch->gguf_arch) + " models cannot say");
}

void read_gguf_hparams(const io::GgufFile& f, ModelConfig& c) {
  const KeyReader r(f, std::string(c.arch->gguf_arch));
  c.hidden_size = r.required("embedding_length", 1, kMaxWidth);
  c.num_layers = r.required("block_count", 1, kMaxLayers);
  c.intermediate_size = r.integer("feed_forward_length", 1, kMaxWidth).value_or(0);
  c.num_heads = r.required("attention.head_count", 1, kMaxHeads);
  c.num_kv_heads = r.integer("attention.head_count_kv", 1, kMaxHeads).value_or(c.num_heads);
  c.max_position_embeddings = r.integer("context_length", 1, kMaxPositions).value_or(4096);
  if (!r.find("attention.key_length") && c.hidden_size % c.num_heads != 0)
    fail(f.path().string(), r.full("embedding_length") + " is not a multiple of " + r.full("attention.head_count"));
  c.head_dim = c.hidden_size / c.num_heads;
  // Keys the family does not list are still read when present (a file from another converter
  // may carry them), so that a value anvil cannot honour is an error rather than ignored.
  for (HParam p : {HParam::KeyLength, HParam::ValueLength, HParam::RmsEpsilon, HParam::LayerNormEpsilon,
                   HParam::RopeFreqBase, HParam::ExpertCount, HParam::ExpertUsedCount, HParam::RopeScalingLinear})
    read_one(p, r, c);
  c.rotary_dim = c.head_dim;
  for (HParam p : c.arch->gguf_keys) read_one(p, r, c);
  // The head layout, checked here so that the message names the key (validate() runs later).
  const std::string head_source = r.find("attention.key_length") ? r.full("attention.key_length")
                                                                  : r.full("embedding_length") + " / " + r.full("attention.head_count");
  if (c.head_dim % 2 != 0)
    fail(f.path().string(), "the head dimension (" + head_source + ") must be even, not " + std::to_string(c.head_dim));
  if (c.rotary_dim <= 0 || c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim)
    fail(f.path().string(), r.full("rope.dimension_count") + " is " + std::to_string(c.rotary_dim) +
                                "; it must be a positive even number up to the head dimension, " + std::to_string(c.head_dim) +
                                " (" + head_source + ")");
  if (c.intermediate_size == 0) {
    if (!c.arch->is_moe()) fail(f.path().string(), "missing " + r.full("feed_forward_length"));
    c.intermediate_size = c.expert_intermediate_size;
  }
}

}  // namespace anvil::model
