// slerp: spherical interpolation between the base model (t = 0) and one other model (t = 1),
// treating each tensor as one vector. Nearly parallel vectors (|cos| > 0.9995) fall back to
// linear interpolation, as mergekit does.
#include <cmath>

#include "merge/methods/methods.h"

namespace anvil::merge {

namespace {

// Interpolation coefficients from the flattened vectors' dot product and squared norms.
std::pair<double, double> slerp_coefficients(double t, double dot, double sq0, double sq1) {
  constexpr double kDotThreshold = 0.9995, kEps = 1e-8;
  double n0 = std::sqrt(sq0), n1 = std::sqrt(sq1);
  double cos = dot / ((n0 > kEps ? n0 : 1.0) * (n1 > kEps ? n1 : 1.0));
  if (std::abs(cos) > kDotThreshold) return {1 - t, t};
  double theta0 = std::acos(cos), sin_theta0 = std::sin(theta0);
  double theta_t = theta0 * t;
  return {std::sin(theta0 - theta_t) / sin_theta0, std::sin(theta_t) / sin_theta0};
}

// Statistics accumulate in double: a flattened 1B-model tensor has ~10^8 elements, too many for
// an fp32 sum to keep its digits.
void add_statistics(const at::Tensor& v0, const at::Tensor& v1, std::vector<double>& stats) {
  auto a = v0.to(at::kDouble), b = v1.to(at::kDouble);
  stats[0] += (a * b).sum().item<double>();
  stats[1] += (a * a).sum().item<double>();
  stats[2] += (b * b).sum().item<double>();
}

}  // namespace

at::Tensor slerp(double t, const at::Tensor& v0, const at::Tensor& v1) {
  std::vector<double> stats(3, 0.0);
  add_statistics(v0, v1, stats);
  auto [s0, s1] = slerp_coefficients(t, stats[0], stats[1], stats[2]);
  return v0 * s0 + v1 * s1;
}

class SlerpMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "slerp"; }
  std::vector<ParamDef> parameters() const override { return {{"t", std::nullopt}}; }
  bool needs_base_model() const override { return true; }
  bool base_is_input() const override { return false; }
  bool chunkable() const override { return true; }
  int statistics_passes() const override { return 1; }
  size_t statistics_size(size_t) const override { return 3; }  // dot, |v0|^2, |v1|^2
  void accumulate(const MergeTask& chunk, int, std::vector<double>& stats) const override {
    if (chunk.inputs.size() != 2) return;
    const MergeInput* base = chunk.base();
    const MergeInput& other = &chunk.inputs[0] == base ? chunk.inputs[1] : chunk.inputs[0];
    add_statistics(base->tensor, other.tensor, stats);
  }
  void check(const MergeTask& task) const override {
    double t = task.params.at("t");
    if (t < 0 || t > 1) throw_merge_error(task, "slerp t = " + std::to_string(t) + " is outside [0, 1]");
    if (task.inputs.size() > 2) throw_merge_error(task, "slerp merges exactly two models");
    if (task.inputs.size() == 2 && !task.base()) throw_merge_error(task, "slerp needs base_model to be one of the two models");
  }
  std::optional<LinearForm> linear_form(const MergeTask& task) const override {
    if (task.inputs.size() == 1) return LinearForm{{1.0}, -1};
    if (!task.stats || task.inputs.size() != 2) return std::nullopt;
    const auto& st = *task.stats;
    auto [s0, s1] = slerp_coefficients(task.params.at("t"), st[0], st[1], st[2]);
    const bool base_first = &task.inputs[0] == task.base();
    return LinearForm{base_first ? std::vector<double>{s0, s1} : std::vector<double>{s1, s0}, -1};
  }
  at::Tensor merge(const MergeTask& task) const override {
    if (task.inputs.size() == 1) return task.inputs[0].tensor;
    if (task.inputs.size() != 2) throw_merge_error(task, "slerp merges exactly two models");
    const MergeInput* base = task.base();
    if (!base) throw_merge_error(task, "slerp needs base_model to be one of the two models");
    const MergeInput& other = &task.inputs[0] == base ? task.inputs[1] : task.inputs[0];
    double t = task.params.at("t");
    if (!task.stats) return slerp(t, base->tensor, other.tensor);
    const auto& st = *task.stats;
    auto [s0, s1] = slerp_coefficients(t, st[0], st[1], st[2]);
    return base->tensor * s0 + other.tensor * s1;
  }
};

std::unique_ptr<MergeMethod> make_slerp() { return std::make_unique<SlerpMerge>(); }

}  // namespace anvil::merge
