// nuslerp (mergekit's NuSLERP): SLERP of exactly two models at t = w2 / (w1 + w2) (0.5 when the
// weights cancel), of their task vectors when a base_model is given. `nuslerp_flatten` (default)
// treats each tensor as one vector; otherwise each row (`nuslerp_row_wise`: each column) is
// interpolated on its own. Near-parallel vectors are interpolated linearly.
#include "merge/methods/methods.h"

namespace anvil::merge {
namespace {

at::Tensor nuslerp(double t, at::Tensor v0, at::Tensor v1, bool row_wise, bool flatten) {
  const auto shape = v0.sizes().vec();
  if (flatten) {
    v0 = v0.reshape({-1});
    v1 = v1.reshape({-1});
  } else if (row_wise) {
    v0 = v0.transpose(0, -1);
    v1 = v1.transpose(0, -1);
  }
  auto unit = [](const at::Tensor& x) { return x / x.norm(2, -1, true).clamp_min(1e-7); };
  const auto cos = (unit(v0) * unit(v1)).sum(-1, true).clamp(-1, 1);
  const double eps = 1e-8;
  const auto colinear = (1 - cos.square()) <= eps * eps;
  const auto theta = at::acos(at::where(colinear, at::zeros_like(cos), cos));
  auto result = (at::sin((1 - t) * theta) * v0 + at::sin(t * theta) * v1) / at::sin(theta);
  result = at::where(colinear, (1 - t) * v0 + t * v1, result);
  if (row_wise && !flatten) result = result.transpose(0, -1);
  return result.reshape(shape);
}

}  // namespace

class NuSlerpMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "nuslerp"; }
  std::vector<ParamDef> parameters() const override { return {{"nuslerp_row_wise", 0.0}, {"nuslerp_flatten", 1.0}}; }
  std::vector<ParamDef> tensor_parameters() const override { return {{"weight", std::nullopt}}; }
  bool base_is_input() const override { return true; }  // optional: task vectors when given
  void check(const MergeTask& task) const override {
    size_t others = 0;
    for (const auto& in : task.inputs) others += !in.is_base;
    if (others != 2) throw_merge_error(task, "nuslerp merges exactly two models besides the base_model");
  }
  at::Tensor merge(const MergeTask& task) const override {
    check(task);
    std::vector<const MergeInput*> two;
    for (const auto& in : task.inputs)
      if (!in.is_base) two.push_back(&in);
    const double w0 = two[0]->params.at("weight"), w1 = two[1]->params.at("weight");
    const double t = std::abs(w0 + w1) < 1e-6 ? 0.5 : w1 / (w0 + w1);
    const bool row_wise = task.params.at("nuslerp_row_wise") != 0, flatten = task.params.at("nuslerp_flatten") != 0;
    const MergeInput* base = task.base();
    if (!base) return nuslerp(t, two[0]->tensor, two[1]->tensor, row_wise, flatten);
    return base->tensor + nuslerp(t, two[0]->tensor - base->tensor, two[1]->tensor - base->tensor, row_wise, flatten);
  }
};

std::unique_ptr<MergeMethod> make_nuslerp() { return std::make_unique<NuSlerpMerge>(); }

}  // namespace anvil::merge
