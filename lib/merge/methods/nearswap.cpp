// nearswap (mergekit's NearSwap): takes the other model's value where it is within t of the base's,
// blending toward the base as they differ more: w = clamp(t / max(|a - b|, 1e-6), 0, 1),
// out = w * b + (1 - w) * a, a the base, b the one other model. Elementwise, so it streams in chunks.
#include "merge/methods/methods.h"

namespace anvil::merge {

class NearSwapMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "nearswap"; }
  std::vector<ParamDef> parameters() const override { return {{"t", std::nullopt}}; }
  bool needs_base_model() const override { return true; }
  bool chunkable() const override { return true; }
  void check(const MergeTask& task) const override {
    if (task.inputs.size() != 2 || !task.base())
      throw_merge_error(task, "nearswap merges exactly two models, one of them the base_model");
    if (!(task.params.at("t") >= 0)) throw_merge_error(task, "nearswap's t must be a number >= 0");
  }
  at::Tensor merge(const MergeTask& task) const override {
    check(task);
    const at::Tensor& a = task.base()->tensor;
    const at::Tensor& b = (task.inputs[0].is_base ? task.inputs[1] : task.inputs[0]).tensor;
    auto weight = (task.params.at("t") / (a - b).abs().clamp_min(1e-6)).clamp(0, 1);
    return weight * b + (1 - weight) * a;
  }
};

std::unique_ptr<MergeMethod> make_nearswap() { return std::make_unique<NearSwapMerge>(); }

}  // namespace anvil::merge
