// karcher (mergekit's Karcher mean): the inputs' directions averaged on the unit sphere by
// Riemannian gradient steps (at most `max_iter`, stopping when the step is under `tol`), scaled by
// the mean of their norms; all models weigh the same. Inputs of norm <= tol take no part in the
// direction; all of them that small gives zero.
#include <cmath>

#include "merge/methods/methods.h"

namespace anvil::merge {

class KarcherMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "karcher"; }
  std::vector<ParamDef> parameters() const override { return {{"max_iter", 10.0}, {"tol", 1e-5}}; }
  bool base_is_input() const override { return true; }  // mergekit averages a given base_model too
  void check(const MergeTask& task) const override {
    const double iters = task.params.at("max_iter"), tol = task.params.at("tol");
    if (!(iters >= 0 && iters <= 1e6 && iters == std::floor(iters))) throw_merge_error(task, "karcher's max_iter must be a whole number in [0, 1e6]");
    if (!(tol >= 0)) throw_merge_error(task, "karcher's tol must be a number >= 0");
  }
  at::Tensor merge(const MergeTask& task) const override {
    check(task);
    if (task.inputs.size() == 1) return task.inputs[0].tensor;
    const double tol = task.params.at("tol");
    const int64_t max_iter = static_cast<int64_t>(task.params.at("max_iter"));
    const double alpha = 1.0 / static_cast<double>(task.inputs.size());
    std::vector<at::Tensor> units;
    double scale = 0;
    for (const auto& in : task.inputs) {
      const double norm = in.tensor.norm().item<double>();
      scale += alpha * norm;
      if (norm > tol) units.push_back(in.tensor / norm);
    }
    if (units.empty()) return at::zeros_like(task.inputs[0].tensor);
    const double weight = 1.0 / static_cast<double>(units.size());  // the remaining ones, renormalised
    at::Tensor mean = at::zeros_like(units[0]);
    for (const auto& u : units) mean.add_(u, weight);
    const double mean_norm = mean.norm().item<double>();
    mean = mean_norm < tol ? units[0].clone() : mean / mean_norm;
    for (int64_t it = 0; it < max_iter; ++it) {
      at::Tensor tangent = at::zeros_like(mean);
      for (const auto& u : units) {
        const double dot = std::clamp((mean.reshape({-1}).dot(u.reshape({-1}))).item<double>(), -1.0, 1.0);
        const double theta = std::acos(dot);
        if (theta < tol) continue;
        tangent.add_(u - dot * mean, weight * theta / std::sin(theta));
      }
      const double step = tangent.norm().item<double>();
      if (step < tol) break;
      mean = std::cos(step) * mean + std::sin(step) * (tangent / step);
      if (const double n = mean.norm().item<double>(); n > tol) mean = mean / n;
    }
    return scale * mean;
  }
};

std::unique_ptr<MergeMethod> make_karcher() { return std::make_unique<KarcherMerge>(); }

}  // namespace anvil::merge
