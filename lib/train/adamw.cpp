#include "train/adamw.h"

#include "util/error.h"

#include <ATen/core/grad_mode.h>  // at::NoGradGuard (not reached through ATen.h in LibTorch 2.x)
#include <cmath>
#include <numbers>

namespace anvil::train {

AdamW::AdamW(std::vector<at::Tensor> params, OptimizerSpec spec, std::vector<double> lr_scale)
    : params_(std::move(params)), lr_scale_(std::move(lr_scale)), spec_(spec) {
  if (lr_scale_.empty()) lr_scale_.assign(params_.size(), 1.0);
  if (lr_scale_.size() != params_.size()) fail("optimizer", "one learning-rate scale per parameter is needed");
  for (const auto& p : params_) {
    exp_avg_.push_back(at::zeros_like(p).detach());
    exp_avg_sq_.push_back(at::zeros_like(p).detach());
  }
}

void AdamW::step(double base_lr) {
  at::NoGradGuard no_grad;
  ++steps_;
  const double b1 = spec_.beta1, b2 = spec_.beta2;
  const double bias1 = 1 - std::pow(b1, static_cast<double>(steps_));
  const double bias2_sqrt = std::sqrt(1 - std::pow(b2, static_cast<double>(steps_)));
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i];
    at::Tensor g = p.grad();
    if (!g.defined()) continue;
    const double lr = base_lr * lr_scale_[i];
    p.mul_(1 - lr * spec_.weight_decay);
    exp_avg_[i].lerp_(g, 1 - b1);
    exp_avg_sq_[i].mul_(b2).addcmul_(g, g, 1 - b2);
    at::Tensor denom = (exp_avg_sq_[i].sqrt() / bias2_sqrt).add_(spec_.eps);
    p.addcdiv_(exp_avg_[i], denom, -lr / bias1);
  }
}

std::vector<at::Tensor> AdamW::state() const {
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < params_.size(); ++i) out.insert(out.end(), {exp_avg_[i], exp_avg_sq_[i]});
  return out;
}

void AdamW::load_state(const std::vector<at::Tensor>& moments, int64_t steps, const std::string& where) {
  at::NoGradGuard no_grad;
  if (moments.size() != 2 * params_.size()) fail(where, "holds " + std::to_string(moments.size()) + " moments, not " +
                                                            std::to_string(2 * params_.size()));
  for (size_t i = 0; i < 2 * params_.size(); ++i)
    if (moments[i].sizes() != params_[i / 2].sizes())
      fail(where, "moment " + std::to_string(i) + " has another shape than its LoRA parameter");
  for (size_t i = 0; i < params_.size(); ++i) {
    exp_avg_[i].copy_(moments[2 * i]);
    exp_avg_sq_[i].copy_(moments[2 * i + 1]);
  }
  steps_ = steps;
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2));
  if (norms.empty()) return 0;
  const double total = at::stack(norms).norm(2).item<double>();
  if (max_norm > 0) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1)
      for (const auto& p : params)
        if (p.grad().defined()) p.grad().mul_(coef);
  }
  return total;
}

double scheduled_lr(const Recipe& recipe, int64_t step, int64_t total) {
  const double base = recipe.optimizer.lr;
  const int64_t warmup = recipe.warmup_steps;
  if (step < warmup) return base * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  if (recipe.lr_scheduler == "constant") return base;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (recipe.lr_scheduler == "linear") return base * std::max(0.0, 1 - progress);
  return base * std::max(0.0, 0.5 * (1 + std::cos(std::numbers::pi * progress)));
}

}  // namespace anvil::train
