// multislerp (mergekit's Multi-SLERP): barycentric interpolation of any number of models on the
// sphere. The (base-relative, when a base_model is given) tensors' directions are averaged with
// their weights, projected onto the tangent space at that mean, combined there and mapped back;
// the result takes the weighted mean norm. Two exactly opposed inputs fall back to linear.
#include "merge/methods/methods.h"

namespace anvil::merge {

class MultiSlerpMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "multislerp"; }
  std::vector<ParamDef> parameters() const override { return {{"normalize_weights", 1.0}, {"eps", 1e-8}}; }
  std::vector<ParamDef> tensor_parameters() const override { return {{"weight", std::nullopt}}; }
  bool base_is_input() const override { return true; }  // optional: task vectors when given
  void check(const MergeTask& task) const override {
    size_t others = 0;
    for (const auto& in : task.inputs) others += !in.is_base;
    if (others < 1) throw_merge_error(task, "multislerp needs at least one model besides the base_model");
    if (!(task.params.at("eps") > 0)) throw_merge_error(task, "multislerp's eps must be > 0");
  }
  at::Tensor merge(const MergeTask& task) const override {
    check(task);
    const MergeInput* base = task.base();
    std::vector<at::Tensor> rows;
    std::vector<double> weights;
    for (const auto& in : task.inputs) {
      if (in.is_base) continue;
      rows.push_back((base ? in.tensor - base->tensor : in.tensor).reshape({-1}));
      weights.push_back(in.params.at("weight"));
    }
    const auto shape = task.inputs[0].tensor.sizes().vec();
    if (rows.size() == 1) return (base ? rows[0] + base->tensor.reshape({-1}) : rows[0]).reshape(shape);
    const double eps = task.params.at("eps");
    auto x = at::stack(rows);  // [n, numel]
    auto w = at::tensor(weights, x.options());
    if (task.params.at("normalize_weights") != 0) w = w / w.sum();
    auto norms = x.norm(2, -1, /*keepdim=*/true);
    auto unit = x / (norms + eps);
    auto mean = (unit * w.view({-1, 1})).sum(0);
    const double mean_norm = mean.norm().item<double>();
    at::Tensor result;
    if (mean_norm < eps) {
      if (rows.size() != 2)
        throw_merge_error(task, "multislerp: the weighted directions cancel out (antipodal inputs with balancing weights)");
      result = x[0] * w[0] + x[1] * w[1];
    } else {
      mean = mean / mean_norm;
      auto tangent = unit - (unit * mean).sum(-1, true) * mean;
      auto combined = (tangent * w.view({-1, 1})).sum(0);
      auto tangent_norm = combined.norm() + eps;
      result = (mean * at::cos(tangent_norm) + combined * (at::sin(tangent_norm) / tangent_norm)) *
               (norms.squeeze(-1) * w).sum();
    }
    if (base) result = result + base->tensor.reshape({-1});
    return result.reshape(shape);
  }
};

std::unique_ptr<MergeMethod> make_multislerp() { return std::make_unique<MultiSlerpMerge>(); }

}  // namespace anvil::merge
