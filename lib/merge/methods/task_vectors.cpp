#include "merge/methods/task_vectors.h"

#include <ATen/CPUGeneratorImpl.h>

namespace anvil::merge {

std::vector<ParamDef> TaskVectorMerge::parameters() const {
  return {{"normalize", o_.default_normalize ? 1.0 : 0.0},
          {"rescale", o_.default_rescale ? 1.0 : 0.0},
          {"int8_mask", 0.0}};  // mergekit's memory option; results are the same without it
}

std::vector<ParamDef> TaskVectorMerge::tensor_parameters() const {
  return {{"weight", std::nullopt}, {"density", 1.0}};
}

at::Tensor sparsify_magnitude(const at::Tensor& delta, double density) {
  if (density >= 1) return delta;
  int64_t k = static_cast<int64_t>(density * static_cast<double>(delta.numel()));
  if (k <= 0) return at::zeros_like(delta);
  auto flat = delta.reshape({-1});
  auto keep = std::get<1>(flat.abs().topk(k, 0, /*largest=*/true, /*sorted=*/false));
  auto mask = at::zeros_like(flat);
  mask.index_fill_(0, keep, 1.0);
  return (flat * mask).view(delta.sizes());
}

at::Tensor sparsify_random(const at::Tensor& delta, double density, bool rescale, uint64_t seed) {
  if (density >= 1) return delta;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto probs = at::full(delta.sizes(), density, at::TensorOptions().dtype(at::kFloat));
  auto mask = at::bernoulli(probs, gen).to(delta.device());
  auto out = delta * mask;
  if (rescale && density > 0) out.div_(density);
  return out;
}

at::Tensor sign_consensus_mask(const at::Tensor& weighted) {
  auto majority = at::where(weighted.sum(0) >= 0, 1.0, -1.0).to(weighted.scalar_type());
  return weighted.sign() == majority;
}

void TaskVectorMerge::check(const MergeTask& task) const {
  if (!task.base()) throw_merge_error(task, std::string(o_.name) + " needs base_model among the inputs");
  for (const auto& in : task.inputs) {
    double density = in.params.at("density");
    if (density < 0 || density > 1) throw_merge_error(task, "density " + std::to_string(density) + " is outside [0, 1]");
  }
}

at::Tensor TaskVectorMerge::merge(const MergeTask& task) const {
  const MergeInput* base = task.base();
  if (!base) throw_merge_error(task, std::string(o_.name) + " needs base_model");
  const bool rescale = task.params.at("rescale") != 0;
  std::vector<at::Tensor> deltas;
  std::vector<double> weights;
  uint64_t index = 0;
  for (const auto& in : task.inputs) {
    if (&in == base) continue;
    ++index;
    double density = in.params.at("density");
    at::Tensor delta = in.tensor - base->tensor;
    if (o_.sparsify == Sparsify::Magnitude) delta = sparsify_magnitude(delta, density);
    else if (o_.sparsify == Sparsify::Random) delta = sparsify_random(delta, density, rescale, task.seed + index * 0x9E3779B97F4A7C15ull);
    deltas.push_back(delta);
    weights.push_back(in.params.at("weight"));
  }
  if (deltas.empty()) return base->tensor;
  auto stacked = at::stack(deltas, 0);
  std::vector<int64_t> wshape(stacked.dim(), 1);
  wshape[0] = static_cast<int64_t>(weights.size());
  auto w = at::tensor(weights, stacked.options().dtype(at::kDouble)).to(stacked.scalar_type()).view(wshape);
  auto weighted = stacked * w;
  at::Tensor mixed, divisor;
  if (o_.sign_consensus) {
    auto mask = sign_consensus_mask(weighted).to(stacked.scalar_type());
    mixed = (weighted * mask).sum(0);
    divisor = (w * mask).sum(0);
    divisor.masked_fill_(divisor == 0, 1.0);
  } else {
    mixed = weighted.sum(0);
    divisor = w.sum(0);
    divisor.masked_fill_(divisor.abs() < 1e-8, 1.0);
  }
  if (task.params.at("normalize") != 0) mixed.div_(divisor);
  return base->tensor + mixed;
}

}  // namespace anvil::merge
