#pragma once
// A PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors): for each targeted linear
// layer W [out, in], the update scale * B [out, r] @ A [r, in], scale = lora_alpha / r (or
// lora_alpha / sqrt(r) with use_rslora; r and alpha per module with rank_pattern/alpha_pattern);
// for an embedding E [vocab, hidden], scale * (B [hidden, r] @ A [r, vocab]) transposed.
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/adapter_config.h"

namespace anvil::model {

class LoraAdapter {
 public:
  static std::unique_ptr<LoraAdapter> load(const std::filesystem::path& dir);

  double scale() const { return scale_; }
  int64_t rank() const { return rank_; }
  const std::vector<std::string>& target_modules() const { return targets_; }
  const AdapterConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }
  // An anvil::Error naming the adapter's file when a target module is not in `model`, or an
  // update is for a weight `base` lacks or has another shape.
  void check_fits(const ModelConfig& model, const io::Checkpoint& base) const;
  // HF weight names (e.g. "model.layers.0.self_attn.q_proj.weight") the adapter changes.
  std::vector<std::string> adapted_weights() const;
  // Shapes of lora_A [r, in] and lora_B [out, r] for an adapted weight (as stored).
  const std::vector<int64_t>& a_shape(const std::string& weight_name) const;
  const std::vector<int64_t>& b_shape(const std::string& weight_name) const;
  // scale * B @ A for `weight_name` in fp32, or an undefined tensor if not adapted.
  at::Tensor delta(const std::string& weight_name) const;

 private:
  std::filesystem::path dir_;
  std::unique_ptr<io::Checkpoint> weights_;
  struct Pair {
    std::string a, b;        // tensor names
    bool embedding = false;  // lora_embedding_A/B: the update is (B @ A) transposed
  };
  std::map<std::string, Pair> pairs_;  // weight -> its A and B
  std::vector<std::string> targets_;
  AdapterConfig config_;
  double scale_ = 1;
  int64_t rank_ = 0;
};

// Writes base + adapter as a full Hugging Face model directory (atomically): adapted weights are
// merged in fp32 and stored in `dtype` ("" keeps the base's dtype); config and tokenizer files are
// copied, with the dtype updated.
void write_merged_model(const std::filesystem::path& base_dir, const LoraAdapter& adapter,
                        const std::filesystem::path& out_dir, const std::string& dtype = "");

}  // namespace anvil::model
