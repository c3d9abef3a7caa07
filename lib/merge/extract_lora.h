#pragma once
// LoRA extraction (what mergekit-extract-lora does): the difference between a fine-tune and its
// base, linear layer by linear layer, factored by a truncated SVD into a PEFT adapter, so that
// `anvil eval BASE --adapter OUT` (or PEFT) approximates the fine-tune with a few percent of its
// size. delta = U S V^T is cut to rank r and split evenly, B = U_r sqrt(S_r), A = sqrt(S_r) V_r^T
// (mergekit's distribute_scale), lora_alpha = r, so PEFT's scale is 1. Embeddings become
// lora_embedding_A/B (PEFT's layout: the update transposed). Tensors streamed one at a time.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace anvil::merge {

struct ExtractLoraOptions {
  int64_t max_rank = 0;           // the rank of every module (at most its smaller dimension)
  std::optional<double> energy;   // per module, the smallest rank whose singular values keep this
                                  // fraction of the delta's squared Frobenius norm (capped by max_rank)
  bool embeddings = true;         // the token embedding as lora_embedding_A/B
  std::function<void(int64_t done, int64_t total)> progress;
};

struct ExtractedModule {
  std::string module;    // e.g. model.layers.0.self_attn.q_proj
  int64_t rank = 0;
  double kept = 0;       // fraction of the delta's squared Frobenius norm the rank keeps
  bool embedding = false;
};

struct ExtractLoraSummary {
  std::vector<ExtractedModule> modules;
  int64_t unchanged = 0;                     // 2-D weights equal in both models (not in the adapter)
  std::vector<std::string> not_decomposable; // changed tensors a LoRA cannot carry (norms, biases)
  std::vector<std::string> notes;            // what was left out and why, one line each
  uint64_t bytes_written = 0;
};

// Validates both models (same family and tensor shapes) before creating anything; writes
// adapter_config.json and adapter_model.safetensors into `out_dir` atomically.
ExtractLoraSummary extract_lora(const std::filesystem::path& base_dir, const std::filesystem::path& finetune_dir,
                                const std::filesystem::path& out_dir, const ExtractLoraOptions& options);

}  // namespace anvil::merge
