#pragma once
// The task-vector family (task arithmetic, TIES, DARE): each input's delta from the base is
// optionally sparsified, optionally filtered by a per-element sign election, then the weighted
// deltas are summed (and normalized) onto the base. The methods differ only in these options.
#include "merge/methods/methods.h"

namespace anvil::merge {

enum class Sparsify { None, Magnitude, Random };

struct TaskVectorOptions {
  std::string_view name;
  Sparsify sparsify;
  bool sign_consensus;
  bool default_normalize;
  bool default_rescale;
};

class TaskVectorMerge final : public MergeMethod {
 public:
  explicit TaskVectorMerge(TaskVectorOptions options) : o_(options) {}
  std::string_view name() const override { return o_.name; }
  std::vector<ParamDef> parameters() const override;
  std::vector<ParamDef> tensor_parameters() const override;
  bool needs_base_model() const override { return true; }
  void check(const MergeTask& task) const override;
  // Magnitude trimming ranks a whole tensor; the other variants are elementwise.
  bool chunkable() const override { return o_.sparsify != Sparsify::Magnitude; }
  at::Tensor merge(const MergeTask& task) const override;

 private:
  TaskVectorOptions o_;
};

// Keeps the int(density * numel) entries of largest magnitude.
at::Tensor sparsify_magnitude(const at::Tensor& delta, double density);
// Keeps each entry with probability `density` (a seeded Bernoulli mask); rescale divides the
// survivors by density so the expected delta is unchanged.
at::Tensor sparsify_random(const at::Tensor& delta, double density, bool rescale, uint64_t seed);
// TIES sign election over stacked weighted deltas [n, ...]: +1 where their sum is >= 0, else -1;
// the mask keeps entries whose sign matches (zeros never match).
at::Tensor sign_consensus_mask(const at::Tensor& weighted_deltas);

}  // namespace anvil::merge
