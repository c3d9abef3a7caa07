#pragma once
// AdamW exactly as torch.optim.AdamW computes it (decoupled weight decay, bias-corrected moments),
// written out here so that its state lives in our own checkpoint files and a resumed run repeats
// the uninterrupted one bit for bit.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "train/recipe.h"

namespace anvil::train {

class AdamW {
 public:
  // `lr_scale` (empty, or one per parameter) multiplies the learning rate of each parameter, as
  // optimizer parameter groups do (LoRA+ gives lora_B a larger one).
  AdamW(std::vector<at::Tensor> params, OptimizerSpec spec, std::vector<double> lr_scale = {});
  // One update from the parameters' .grad(), at learning rate `lr` (times each one's lr_scale).
  void step(double lr);
  int64_t steps_taken() const { return steps_; }
  // First and second moments, two per parameter, for checkpoints.
  std::vector<at::Tensor> state() const;
  // `moments` as state() returns them; one of another shape than its parameter is an
  // anvil::Error naming `where` (the checkpoint's optimizer file).
  void load_state(const std::vector<at::Tensor>& moments, int64_t steps, const std::string& where);

 private:
  std::vector<at::Tensor> params_, exp_avg_, exp_avg_sq_;
  std::vector<double> lr_scale_;
  OptimizerSpec spec_;
  int64_t steps_ = 0;
};

// Clips the gradients' global L2 norm to max_norm (as torch.nn.utils.clip_grad_norm_) and returns
// the norm before clipping. max_norm <= 0 only measures.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

// The learning rate for optimizer step `step` (0-based) of `total`: linear warmup from 0, then
// cosine to 0, linear to 0 or constant, as transformers' get_*_schedule_with_warmup.
double scheduled_lr(const Recipe& recipe, int64_t step, int64_t total);

}  // namespace anvil::train
