#pragma once
// MoE assembly (mergekit-moe's schema): dense fine-tunes of one base become the experts of a
// sparse Mixtral-layout model. Attention, norms, embeddings and LM head come from base_model;
// layer l's expert e is expert e's MLP of layer l (gate/down/up -> w1/w2/w3); the router rows
// are chosen so that each expert wins on its own prompts:
//   hidden        the mean over the prompts' tokens of the input the router will see (each
//                 layer's MLP input, post-attention norm, computed with anvil's kernel on the
//                 base model), positive prompts minus negative ones, normalized per layer
//                 (mergekit takes the residual stream before the layer, last token);
//   cheap_embed   the prompts' summed token embeddings, the same row for every layer;
//   random / uniform_random  seeded N(0, 1) / U(-1/sqrt(h), 1/sqrt(h)).
// With `architecture: qwen` (or a shared expert) the output is Qwen2-MoE's layout instead, as
// mergekit-moe writes it: mlp.experts.E.{gate,up,down}_proj, mlp.shared_expert.*, mlp.gate and
// mlp.shared_expert_gate [1, hidden]; q/k/v biases (zeros where the base has none); the experts'
// and the shared expert's width the base's intermediate size; top-k renormalised
// (norm_topk_prob). Bases: Llama, Mistral or Qwen2.
// Memory: only the base model is loaded (for `hidden`), and freed before writing; experts are
// read tensor by tensor from their mapped files.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace anvil::merge {

struct MoeExpert {
  std::filesystem::path model;
  std::vector<std::string> positive_prompts, negative_prompts;
};

struct MoeConfig {
  std::filesystem::path source;  // the YAML file, for messages
  std::filesystem::path base_model;
  std::vector<MoeExpert> experts;
  // Qwen2-MoE output (architecture: qwen): its one shared expert, always added to the routed
  // ones through a sigmoid gate whose row comes from the shared expert's prompts.
  std::optional<MoeExpert> shared_expert;
  std::string architecture = "mixtral";  // mixtral | qwen (the default with a shared expert)
  std::string gate_mode = "hidden";
  std::optional<std::string> dtype;  // bfloat16, float16, float32 (default: the base's)
  int64_t experts_per_token = 2;
  // Reads and checks a mergekit-moe YAML; model paths resolve against the current directory,
  // then the config's directory.
  static MoeConfig load(const std::filesystem::path& path);
};

struct MoeOptions {
  uint64_t seed = 0;  // random gate modes
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
};

struct MoeSummary {
  int64_t layers = 0, experts = 0, tensors = 0;
  uint64_t bytes_written = 0;
};

// Checks every model (base and experts: one llama-layout family, the same shapes) before
// creating anything, then writes the MoE model directory atomically.
MoeSummary run_moe(const MoeConfig& config, const std::filesystem::path& out_dir, const MoeOptions& options);

}  // namespace anvil::merge
