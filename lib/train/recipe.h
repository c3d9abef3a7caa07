#pragma once
// A LoRA fine-tuning recipe (YAML). The schema is documented in recipes/README.md; names follow
// axolotl where it has one (base_model, datasets, sequence_len, micro_batch_size, ...).
// Parsing is strict: unknown keys, wrong types, bad values and missing files are errors that name
// the recipe file and line, raised before any training starts.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace anvil::train {

struct DataSource {
  std::filesystem::path path;
  // raw: a plain text file cut into windows of sequence_len tokens.
  // text: JSONL {"text": ...}; prompt_completion: JSONL {"prompt", "completion"}, loss on the
  // completion; chat: JSONL {"messages": [{role, content}]}, loss on assistant turns.
  std::string type = "raw";
  std::string sampling = "random";  // raw only: random windows (seeded) or sequential ones
};

struct LoraSpec {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0;
  std::vector<std::string> target_modules{"all-linear"};
  bool rslora = false;
  std::string where = "lora";  // the recipe file, for messages about these settings
  double scale() const;  // alpha / r, or alpha / sqrt(r) with rslora
};

struct OptimizerSpec {
  double lr = 2e-4;
  double beta1 = 0.9, beta2 = 0.999;
  double weight_decay = 0;
  double eps = 1e-8;
};

struct Recipe {
  std::filesystem::path file;  // where the recipe came from (for messages)
  std::filesystem::path base_model;
  std::filesystem::path output_dir;
  std::vector<DataSource> datasets;
  std::optional<DataSource> val_dataset;
  double val_split = 0;           // fraction of the training data held out when no val_dataset
  int64_t val_max_examples = 0;   // 0: all
  int64_t sequence_len = 512;
  bool sample_packing = false;
  bool shuffle = true;
  // How chat data is rendered: "model" (the base model's own chat template) or "chatml".
  std::string chat_template = "model";
  LoraSpec lora;
  OptimizerSpec optimizer;
  double max_grad_norm = 1.0;  // 0 disables clipping
  std::string lr_scheduler = "cosine";  // cosine | linear | constant (after warmup)
  int64_t warmup_steps = 0;
  int64_t max_steps = 0;   // one of max_steps / num_epochs
  double num_epochs = 0;
  int64_t micro_batch_size = 1;
  int64_t gradient_accumulation_steps = 1;
  uint64_t seed = 42;
  std::string precision = "fp32";  // fp32 | bf16 (autocast, fp32 LoRA weights and optimizer)
  bool gradient_checkpointing = false;
  int64_t eval_steps = 0;     // 0: only at the start and the end
  int64_t save_steps = 0;     // 0: only at the end
  int64_t logging_steps = 1;
  // Evaluation-driven runs (transformers' EarlyStoppingCallback and TrainingArguments): stop
  // after `early_stopping_patience` evaluations without an improvement of more than
  // `early_stopping_threshold`; write the best evaluated adapter instead of the last; keep at most
  // `save_total_limit` checkpoint-N directories (0: all).
  int64_t early_stopping_patience = 0;
  double early_stopping_threshold = 0;
  bool load_best_model_at_end = false;
  int64_t save_total_limit = 0;
  // LoRA+ (PEFT's create_loraplus_optimizer): lora_B learns at lr * loraplus_lr_ratio (0: off).
  double loraplus_lr_ratio = 0;
  // NEFTune (transformers' neftune_noise_alpha): uniform noise of magnitude alpha / sqrt(L * d)
  // on the token embeddings while training (0: off).
  double neftune_noise_alpha = 0;
  std::string device = "auto";  // auto | cpu | cuda
  int64_t threads = 0;          // CPU threads, 0: all cores
};

// `overrides` are "key.path=value" strings (from --set), applied before validation; the value is
// read as YAML ("lora.r=16", "datasets=[...]").
Recipe load_recipe(const std::filesystem::path& yaml_file, const std::vector<std::string>& overrides = {});

}  // namespace anvil::train
