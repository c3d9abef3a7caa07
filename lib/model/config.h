#pragma once
// config.json of a Hugging Face causal LM, in both spellings found in the wild:
// older (rope_theta, rope_scaling, torch_dtype) and newer (rope_parameters, dtype).
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
  const ArchitectureTraits* arch = nullptr;
  std::string model_type;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  std::optional<int64_t> sliding_window;
  int64_t num_experts = 0;           // MoE only
  int64_t num_experts_per_tok = 0;   // MoE only
  std::string dtype = "float32";     // torch_dtype / dtype: the checkpoint's storage dtype
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> pad_token_id;
  std::string raw_json;              // the original text, for writing derived configs

  // Checks the values against each other (head layout, ids inside the vocabulary, finite
  // epsilon and rotary base); an anvil::Error naming `where` otherwise. parse/from_gguf call it.
  void validate(const std::string& where) const;

  static ModelConfig parse(const std::string& json_text, const std::string& where);
  // From a llama.cpp GGUF's {arch}.* metadata (and its tensor list, for vocabulary and tying).
  static ModelConfig from_gguf(const class io::GgufFile& gguf);
  static ModelConfig load(const std::filesystem::path& model_dir);
};

}  // namespace anvil::model
