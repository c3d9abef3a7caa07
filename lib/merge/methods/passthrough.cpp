// passthrough: copies its single input (optionally times `scale`); with slices it stacks layers.
#include "merge/methods/methods.h"

namespace anvil::merge {

class PassthroughMerge final : public MergeMethod {
 public:
  std::string_view name() const override { return "passthrough"; }
  std::vector<ParamDef> tensor_parameters() const override { return {{"scale", 1.0}}; }
  bool chunkable() const override { return true; }
  std::optional<LinearForm> linear_form(const MergeTask& task) const override {
    if (task.inputs.size() != 1) return std::nullopt;
    return LinearForm{{task.inputs[0].params.at("scale")}, -1};
  }
  at::Tensor merge(const MergeTask& task) const override {
    if (task.inputs.size() != 1) throw_merge_error(task, "passthrough takes exactly one source per slice");
    double scale = task.inputs[0].params.at("scale");
    return scale == 1.0 ? task.inputs[0].tensor : task.inputs[0].tensor * scale;
  }
};

std::unique_ptr<MergeMethod> make_passthrough() { return std::make_unique<PassthroughMerge>(); }

}  // namespace anvil::merge
