// linear: weighted average of the inputs; `normalize` (default true) divides by the weight sum.
#include "merge/methods/methods.h"

namespace anvil::merge {

class LinearMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "linear"; }
  std::vector<ParamDef> parameters() const override { return {{"normalize", 1.0}}; }
  std::vector<ParamDef> tensor_parameters() const override { return {{"weight", std::nullopt}}; }
  bool chunkable() const override { return true; }
  std::optional<LinearForm> linear_form(const MergeTask& task) const override {
    LinearForm f;
    double sum = 0;
    for (const auto& in : task.inputs) sum += in.params.at("weight");
    const bool normalize = task.params.at("normalize") != 0;
    if (normalize && sum == 0) return std::nullopt;  // merge() reports the error
    for (const auto& in : task.inputs) f.coeffs.push_back(in.params.at("weight") / (normalize ? sum : 1.0));
    return f;
  }
  at::Tensor merge(const MergeTask& task) const override {
    at::Tensor sum;
    double weight_sum = 0;
    for (const auto& in : task.inputs) {
      double w = in.params.at("weight");
      sum = sum.defined() ? sum.add(in.tensor, w) : in.tensor * w;
      weight_sum += w;
    }
    if (task.params.at("normalize") != 0) {
      if (weight_sum == 0) throw_merge_error(task, "weights sum to zero and normalize is on");
      sum.div_(weight_sum);
    }
    return sum;
  }
};

std::unique_ptr<MergeMethod> make_linear() { return std::make_unique<LinearMerge>(); }

}  // namespace anvil::merge
