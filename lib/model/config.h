#pragma once
// config.json of a Hugging Face causal LM, in both spellings found in the wild:
// older (rope_theta, rope_scaling, torch_dtype) and newer (rope_parameters, dtype), plus the
// remote-code spellings of the families that have them (MiniCPM, DeepSeekMoE).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/architecture.h"

namespace anvil::io {
class GgufFile;
}

namespace anvil::model {

struct RopeConfig {
  double theta = 10000.0;
  std::optional<double> sliding_theta;  // Gemma 3: the windowed layers' base (rope_local_base_freq)
  std::string type = "default";  // "default" or "llama3"
  // llama3 scaling parameters
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  // llama.cpp's form of the same scaling: per-frequency divisors (GGUF rope_freqs.weight).
  std::vector<float> freq_divisors;
};

// llama3 scaling as llama.cpp's converter writes it: inv_freq[i] is divided by divisors[i].
std::vector<float> llama3_rope_divisors(const RopeConfig& rope, int64_t head_dim);

struct ModelConfig {
  const Architecture* arch = nullptr;
  std::string model_type;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;           // dims of each head the rotary embedding turns (Phi-2: a part)
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;       // the norm epsilon (LayerNorm's too)
  Activation activation = Activation::Silu;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  // Attention: windows, scores.
  std::optional<int64_t> sliding_window;
  std::vector<bool> sliding_layers;  // per layer: windowed; empty = every layer (when a window is set)
  double query_pre_attn_scalar = 0;  // scores scaled by its -1/2 power; 0 = head_dim
  double attn_logit_softcap = 0;     // scores -> cap * tanh(scores / cap); 0 = none
  double final_logit_softcap = 0;
  // Scales (MiniCPM; Gemma's embedding scale is sqrt(hidden)).
  double embedding_scale = 1;
  double residual_scale = 1;
  double logit_scale = 1;            // logits of h / logit_scale
  // MoE.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t expert_intermediate_size = 0;  // routed experts' width (intermediate_size for Mixtral)
  int64_t shared_intermediate_size = 0;  // the shared expert(s)' total width
  int64_t num_shared_experts = 0;        // DeepSeekMoE's count (GGUF expert_shared_count)
  int64_t first_dense_layers = 0;        // DeepSeekMoE: layers before the first sparse one
  std::vector<bool> sparse_layers;       // per layer (MoE families): routed experts, else dense
  bool renormalize_top_k = true;
  std::string dtype = "float32";     // torch_dtype / dtype: the checkpoint's storage dtype
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;
  std::string raw_json;              // the original text, for writing derived configs

  bool layer_is_sparse(int64_t layer) const {
    return arch->is_moe() && (sparse_layers.empty() || sparse_layers[static_cast<size_t>(layer)]);
  }
  bool layer_is_sliding(int64_t layer) const {
    return sliding_window && (sliding_layers.empty() || sliding_layers[static_cast<size_t>(layer)]);
  }
  double layer_rope_theta(int64_t layer) const {
    return rope.sliding_theta && layer_is_sliding(layer) ? *rope.sliding_theta : rope.theta;
  }
  // The width of layer `layer`'s dense FFN (0 for a sparse layer).
  int64_t dense_ffn_size(int64_t layer) const { return layer_is_sparse(layer) ? 0 : intermediate_size; }

  // Checks the values against each other (head layout, ids inside the vocabulary, finite
  // epsilon and rotary base); an anvil::Error naming `where` otherwise. parse/from_gguf call it.
  void validate(const std::string& where) const;

  static ModelConfig parse(const std::string& json_text, const std::string& where);
  // From a llama.cpp GGUF's {arch}.* metadata (and its tensor list, for vocabulary and tying).
  static ModelConfig from_gguf(const class io::GgufFile& gguf);
  static ModelConfig load(const std::filesystem::path& model_dir);
  // config.json text for this config, in transformers' spelling of the family (`torch_dtype`:
  // the checkpoint's dtype name); parse() of it gives this config back.
  std::string to_hf_json(const std::string& torch_dtype) const;
};

// Bounds on sizes read from a config: far above any real model (Llama-3-405B: hidden 16,384,
// 126 layers, vocab 128,256), low enough that products of them cannot overflow int64 and that a
// typo like 10^12 is an error instead of a truncated GGUF field.
inline constexpr int64_t kMaxWidth = 1 << 20;      // hidden, intermediate, head_dim
inline constexpr int64_t kMaxLayers = 4096;
inline constexpr int64_t kMaxHeads = 1 << 14;
inline constexpr int64_t kMaxVocab = 1 << 24;
inline constexpr int64_t kMaxExperts = 1 << 12;
inline constexpr int64_t kMaxPositions = int64_t{1} << 32;

}  // namespace anvil::model
