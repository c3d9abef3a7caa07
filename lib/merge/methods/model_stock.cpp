// model_stock (Model Stock, arXiv 2403.19522, as mergekit computes it): the fine-tunes' average
// pulled toward the base by how aligned their task vectors are. With N fine-tunes and cos the mean
// pairwise cosine of their offsets from the base, t = N cos / (1 + (N - 1) cos) and
// out = t * mean(fine-tunes) + (1 - t) * base; where 1 + (N - 1) cos is 0 the base stays.
// `filter_wise`: one cos per output row instead of per tensor.
#include "merge/methods/methods.h"

namespace anvil::merge {

class ModelStockMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "model_stock"; }
  std::vector<ParamDef> parameters() const override { return {{"filter_wise", 0.0}}; }
  bool needs_base_model() const override { return true; }
  void check(const MergeTask& task) const override {
    if (task.inputs.size() < 3 || !task.base())
      throw_merge_error(task, "model_stock needs the base_model and at least two other models");
  }
  at::Tensor merge(const MergeTask& task) const override {
    check(task);
    const bool filter_wise = task.params.at("filter_wise") != 0;
    at::Tensor w0 = task.base()->tensor;
    const auto shape = w0.sizes().vec();
    auto view = [&](const at::Tensor& t) {
      if (!filter_wise) return t.reshape({-1});
      return t.dim() == 1 ? t.unsqueeze(0) : t;
    };
    w0 = view(w0);
    std::vector<at::Tensor> offsets;
    at::Tensor sum;
    for (const auto& in : task.inputs) {
      if (in.is_base) continue;
      const at::Tensor w = view(in.tensor);
      offsets.push_back(w - w0);
      sum = sum.defined() ? sum + w : w.clone();
    }
    std::vector<at::Tensor> cosines;
    for (size_t i = 0; i < offsets.size(); ++i)
      for (size_t j = i + 1; j < offsets.size(); ++j) {
        auto norms = offsets[i].norm(2, -1) * offsets[j].norm(2, -1);
        cosines.push_back(((offsets[i] * offsets[j]).sum(-1) / norms.clamp_min(1e-6)).clamp(-1, 1));
      }
    const auto cos = at::stack(cosines).mean(0).unsqueeze(-1);
    const double n = static_cast<double>(offsets.size());
    const auto denominator = 1 + (n - 1) * cos;
    const auto singular = denominator.abs() < 1e-6;
    const auto t = at::where(singular, at::zeros_like(cos), n * cos / at::where(singular, at::ones_like(denominator), denominator));
    return (t * (sum / n) + (1 - t) * w0).reshape(shape);
  }
};

std::unique_ptr<MergeMethod> make_model_stock() { return std::make_unique<ModelStockMerge>(); }

}  // namespace anvil::merge
