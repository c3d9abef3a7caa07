// slerp: spherical interpolation between the base model (t = 0) and one other model (t = 1),
// treating each tensor as one vector. Nearly parallel vectors (|cos| > 0.9995) fall back to
// linear interpolation, as mergekit does.
#include <cmath>

#include "merge/methods/methods.h"

namespace anvil::merge {

at::Tensor slerp(double t, const at::Tensor& v0, const at::Tensor& v1) {
  constexpr double kDotThreshold = 0.9995, kEps = 1e-8;
  // Norms and the dot product accumulate in double: a flattened 1B-model tensor has ~10^8
  // elements, too many for an fp32 sum to keep its digits.
  double n0 = v0.to(at::kDouble).norm().item<double>();
  double n1 = v1.to(at::kDouble).norm().item<double>();
  double dot = (v0.to(at::kDouble) * v1.to(at::kDouble)).sum().item<double>();
  dot /= (n0 > kEps ? n0 : 1.0) * (n1 > kEps ? n1 : 1.0);
  if (std::abs(dot) > kDotThreshold) return v0 * (1 - t) + v1 * t;
  double theta0 = std::acos(dot), sin_theta0 = std::sin(theta0);
  double theta_t = theta0 * t;
  double s0 = std::sin(theta0 - theta_t) / sin_theta0;
  double s1 = std::sin(theta_t) / sin_theta0;
  return v0 * s0 + v1 * s1;
}

class SlerpMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "slerp"; }
  std::vector<ParamDef> parameters() const override { return {{"t", std::nullopt}}; }
  bool needs_base_model() const override { return true; }
  bool base_is_input() const override { return false; }
  void check(const MergeTask& task) const override {
    double t = task.params.at("t");
    if (t < 0 || t > 1) throw_merge_error(task, "slerp t = " + std::to_string(t) + " is outside [0, 1]");
    if (task.inputs.size() > 2) throw_merge_error(task, "slerp merges exactly two models");
    if (task.inputs.size() == 2 && !task.base()) throw_merge_error(task, "slerp needs base_model to be one of the two models");
  }
  at::Tensor merge(const MergeTask& task) const override {
    if (task.inputs.size() == 1) return task.inputs[0].tensor;
    if (task.inputs.size() != 2) throw_merge_error(task, "slerp merges exactly two models");
    const MergeInput* base = task.base();
    if (!base) throw_merge_error(task, "slerp needs base_model to be one of the two models");
    const MergeInput& other = &task.inputs[0] == base ? task.inputs[1] : task.inputs[0];
    return slerp(task.params.at("t"), base->tensor, other.tensor);
  }
};

std::unique_ptr<MergeMethod> make_slerp() { return std::make_unique<SlerpMerge>(); }

}  // namespace anvil::merge
