#pragma once
// The trainable half of LoRA: A and B for every targeted linear layer, initialised as PEFT does
// (A kaiming-uniform with bound 1/sqrt(in), B zero), attached unmerged to the frozen model, and
// saved in PEFT's adapter format (adapter_config.json + adapter_model.safetensors).
#include <ATen/ATen.h>

#include <filesystem>
#include <string>
#include <vector>

#include "train/recipe.h"

namespace anvil::model {
class Transformer;
}

namespace anvil::train {

class LoraParameters {
 public:
  LoraParameters(const model::Transformer& model, const LoraSpec& spec, uint64_t seed, at::Device device);

  void attach(model::Transformer& model) const;
  // PEFT tensor names ("base_model.model.<module>.lora_A.weight") and the tensors, A then B for
  // each module, in model order.
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<at::Tensor>& tensors() const { return tensors_; }
  int64_t count() const;
  // Writes adapter_config.json and adapter_model.safetensors into `dir` (which must exist).
  void save(const std::filesystem::path& dir, const std::string& base_model) const { save(dir, base_model, tensors_); }
  // The same with other values for tensors() (a snapshot of them: the best adapter so far).
  void save(const std::filesystem::path& dir, const std::string& base_model,
            const std::vector<at::Tensor>& tensors) const;
  // Loads the weights of an adapter saved by save() (resuming).
  void load(const std::filesystem::path& dir);

 private:
  LoraSpec spec_;
  std::vector<std::string> modules_;       // e.g. model.layers.0.self_attn.q_proj
  std::vector<std::string> short_names_;   // e.g. q_proj, for target_modules
  std::vector<std::string> names_;
  std::vector<at::Tensor> tensors_;
};

// Saves / loads named fp32 tensors as one safetensors file (optimizer state, adapters).
void save_tensors(const std::filesystem::path& file, const std::vector<std::string>& names,
                  const std::vector<at::Tensor>& tensors);
std::vector<at::Tensor> load_tensors(const std::filesystem::path& file, const std::vector<std::string>& names,
                                     at::Device device);

}  // namespace anvil::train
