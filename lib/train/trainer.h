#pragma once
// The LoRA training loop: frozen base model, trainable A/B, AdamW with warmup and decay,
// gradient accumulation and clipping, periodic validation and checkpoints, JSONL log and SVG
// loss curve. Every random choice (batches, dropout) is derived from the seed and the step number,
// so a checkpoint needs no RNG state and resuming continues the exact same loss sequence.
#include <ATen/ATen.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train/recipe.h"

namespace anvil::model {
class Transformer;
}

namespace anvil::train {

struct LogEntry {
  int64_t step = 0;  // optimizer steps completed
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_second = 0, elapsed_seconds = 0;
  std::optional<double> val_loss;
};

struct TrainHooks {
  std::function<void(const std::string&)> info;        // one-line status messages
  std::function<void(const LogEntry&, int64_t total)> on_step;
  std::function<bool()> stop_requested;                // checked after every step
};

struct TrainOutcome {
  int64_t steps_done = 0, total_steps = 0;
  bool interrupted = false;
  bool early_stopped = false;  // early_stopping_patience ended the run
  // The lowest validation loss evaluated after a training step, and its step.
  std::optional<double> best_val_loss;
  int64_t best_step = 0;
  std::optional<double> initial_val_loss, final_val_loss;
  std::filesystem::path checkpoint;  // the last checkpoint written
  std::vector<LogEntry> log;
};

class Trainer {
 public:
  // Loads the base model and tokenizes the data; every recipe error surfaces here.
  Trainer(Recipe recipe, const TrainHooks& hooks = {});
  ~Trainer();

  // `path` is a checkpoint directory (checkpoint-N) or an output directory holding some.
  void resume_from(const std::filesystem::path& path);
  TrainOutcome run();

  int64_t total_steps() const { return total_steps_; }
  int64_t first_step() const { return start_step_; }
  int64_t trainable_parameters() const;
  double validation_loss();
  model::Transformer& model() { return *model_; }
  const Recipe& recipe() const { return recipe_; }

 private:
  struct Impl;
  void save_checkpoint(const std::filesystem::path& dir);
  struct StepResult {
    double loss = 0, grad_norm = 0;
    int64_t tokens = 0;  // input tokens processed (padding excluded)
  };
  StepResult train_step(int64_t step);
  // Records an evaluation after step `step` for early stopping and load_best_model_at_end.
  void note_evaluation(int64_t step, double val_loss);
  void prune_checkpoints() const;

  Recipe recipe_;
  TrainHooks hooks_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<model::Transformer> model_;
  int64_t total_steps_ = 0;
  int64_t start_step_ = 0;
  int64_t steps_done_ = 0;
  std::vector<LogEntry> log_;
  std::optional<double> initial_val_loss_;
};

// Batch tensors for a list of examples: ids [B, L] (right-padded with pad) and labels [B, L]
// with -100 where the loss does not look.
struct Batch {
  at::Tensor ids, labels;
  int64_t tokens = 0;  // non-padding input tokens
};
struct Example;
Batch make_batch(const std::vector<Example>& examples, int32_t pad, at::Device device);

// Next-token cross-entropy over the labelled positions (labels shifted by one): their mean, or
// with `sum` their sum.
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels, bool sum = false);

}  // namespace anvil::train
