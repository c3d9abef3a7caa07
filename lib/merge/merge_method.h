#pragma once
// One interface for every merge method (as in mergekit): a method declares its parameters and
// merges one tensor at a time. Adding a method is a new file in methods/ and a line in
// methods/methods.def.
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "merge/block_kernel.h"

namespace anvil::merge {

struct ParamDef {
  std::string name;
  std::optional<double> default_value;  // absent: required
};

// One input model's tensor with that model's per-tensor parameters (e.g. weight, density).
struct MergeInput {
  at::Tensor tensor;  // fp32
  std::map<std::string, double> params;
  bool is_base = false;
};

// A merge that is a fixed linear combination of its inputs, which the runner can execute in one
// fused pass straight from the stored bytes: out = sum_k coeffs[k] * x_k, or, with a delta base
// b, out = x_b + sum_{k != b} coeffs[k] * (x_k - x_b) (task vectors keep their precision).
struct LinearForm {
  std::vector<double> coeffs;
  int delta_base = -1;
};

struct MergeTask {
  std::string tensor_name;
  std::vector<MergeInput> inputs;        // in config order; at most one is_base
  std::map<std::string, double> params;  // method-level parameters (e.g. t, normalize)
  uint64_t seed = 0;                     // per-tensor (and per-chunk) seed for random methods
  std::vector<double>* stats = nullptr;  // per-tensor statistics from accumulate(), when streamed
  const MergeInput* base() const;
};

class MergeMethod {
 public:
  virtual ~MergeMethod() = default;
  virtual std::string_view name() const = 0;
  virtual std::vector<ParamDef> parameters() const { return {}; }         // per merge / slice
  virtual std::vector<ParamDef> tensor_parameters() const { return {}; }  // per input model
  virtual bool needs_base_model() const { return false; }
  // Whether the base model joins the inputs even when `models:` does not list it (task-vector
  // methods); linear and SLERP merge exactly the listed models.
  virtual bool base_is_input() const { return needs_base_model(); }
  // Row-chunked execution bounds memory to a few chunks instead of whole tensors. A method can
  // run on chunks when each output element depends only on the same element of the inputs, plus
  // optional per-tensor statistics that accumulate() gathers over all chunks in a first pass.
  virtual bool chunkable() const { return false; }
  // Passes over all chunks before merging (they may depend on the task's parameters: tensors
  // undefined), and the statistics they fill (per tensor).
  virtual int statistics_passes(const MergeTask& task) const { return 0; }
  virtual size_t statistics_size(size_t n_inputs) const { return 0; }
  virtual void accumulate(const MergeTask& chunk, int pass, std::vector<double>& stats) const {}
  // The method as a linear combination, if it is one for this task (tensors undefined; stats set
  // after the statistics passes).
  virtual std::optional<LinearForm> linear_form(const MergeTask& task) const { return std::nullopt; }
  // The method on decoded fp32 blocks (statistics passes and merge), if it has that fast path for
  // this task (tensors undefined, stats unset); it must give what merge() gives.
  virtual std::unique_ptr<BlockKernel> block_kernel(const MergeTask& task) const { return nullptr; }
  // Checks parameter values before any tensor is read (tensors in `task` are undefined).
  virtual void check(const MergeTask& task) const {}
  virtual at::Tensor merge(const MergeTask& task) const = 0;
};

const MergeMethod* find_merge_method(std::string_view name);
std::vector<std::string_view> merge_method_names();

}  // namespace anvil::merge
