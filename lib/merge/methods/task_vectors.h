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
  std::optional<LinearForm> linear_form(const MergeTask& task) const override;
  // Magnitude trimming and sign election on blocks (DARE's random drop stays on tensors: its
  // masks come from LibTorch's generator).
  std::unique_ptr<BlockKernel> block_kernel(const MergeTask& task) const override;
  // Elementwise, except magnitude trimming, which streams too: two statistics passes find each
  // task vector's exact top-k threshold (a radix select over |delta|'s float bits).
  bool chunkable() const override { return true; }
  int statistics_passes() const override { return o_.sparsify == Sparsify::Magnitude ? 2 : 0; }
  size_t statistics_size(size_t n_inputs) const override;
  void accumulate(const MergeTask& chunk, int pass, std::vector<double>& stats) const override;
  at::Tensor merge(const MergeTask& task) const override;

 private:
  TaskVectorOptions o_;
};

// Keeps the int(density * numel) entries of largest magnitude (whole tensor in memory).
at::Tensor sparsify_magnitude(const at::Tensor& delta, double density);

// The same selection streamed over chunks: histograms of |delta|'s float bits (high 16 bits, then
// low 16 bits inside the boundary bucket) give the exact threshold; entries equal to it are kept
// in index order until exactly k are kept.
class MagnitudeSelector {
 public:
  static constexpr size_t kSlots = 2 * 65536 + 8;
  explicit MagnitudeSelector(double* slots) : s_(slots) {}
  void count(const float* delta, int64_t n, int pass, double density);  // pass 0, then 1
  void keep(float* delta, int64_t n, double density);            // zeroes what is not kept

 private:
  double* s_;
};
// Keeps each entry with probability `density` (a seeded Bernoulli mask); rescale divides the
// survivors by density so the expected delta is unchanged.
at::Tensor sparsify_random(const at::Tensor& delta, double density, bool rescale, uint64_t seed);
// TIES sign election over stacked weighted deltas [n, ...]: +1 where their sum is >= 0, else -1;
// the mask keeps entries whose sign matches (zeros never match).
at::Tensor sign_consensus_mask(const at::Tensor& weighted_deltas);

}  // namespace anvil::merge
