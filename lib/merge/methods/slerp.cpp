// slerp: spherical interpolation between the base model (t = 0) and one other model (t = 1),
// treating each tensor as one vector. Nearly parallel vectors (|cos| > 0.9995) fall back to
// linear interpolation, as mergekit does.
#include <cmath>

#include "merge/block_kernel.h"
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

// The statistics pass on blocks (double sums, eight running partial sums so that the loop
// vectorizes), then the interpolation as the linear kernel once the coefficients are known.
class SlerpKernel final : public BlockKernel {
 public:
  SlerpKernel(double t, int base, int other) : t_(t), base_(base), other_(other) {}

  void accumulate(const float* const* x, int64_t n, int, std::vector<double>& stats) override {
    const float* a = x[base_];
    const float* b = x[other_];
    double dot[8] = {}, sq0[8] = {}, sq1[8] = {};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) {
        const double va = a[i + k], vb = b[i + k];
        dot[k] += va * vb;
        sq0[k] += va * va;
        sq1[k] += vb * vb;
      }
    for (; i < n; ++i) {
      const double va = a[i], vb = b[i];
      dot[0] += va * vb;
      sq0[0] += va * va;
      sq1[0] += vb * vb;
    }
    for (int k = 0; k < 8; ++k) stats[0] += dot[k], stats[1] += sq0[k], stats[2] += sq1[k];
  }

  void merge(const float* const* x, int64_t n, float* out, std::vector<double>* stats) override {
    if (!linear_) {
      auto [s0, s1] = slerp_coefficients(t_, (*stats)[0], (*stats)[1], (*stats)[2]);
      LinearForm form;
      form.coeffs.assign(2, 0.0);
      form.coeffs[static_cast<size_t>(base_)] = s0;
      form.coeffs[static_cast<size_t>(other_)] = s1;
      linear_ = linear_kernel(form);
    }
    linear_->merge(x, n, out, stats);
  }

 private:
  double t_;
  int base_, other_;
  std::unique_ptr<BlockKernel> linear_;
};

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
  int statistics_passes(const MergeTask&) const override { return 1; }
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
  std::unique_ptr<BlockKernel> block_kernel(const MergeTask& task) const override {
    if (task.inputs.size() != 2 || !task.base()) return nullptr;
    const int base = static_cast<int>(task.base() - task.inputs.data());
    return std::make_unique<SlerpKernel>(task.params.at("t"), base, 1 - base);
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
