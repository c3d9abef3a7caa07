#pragma once
// The task-vector family (mergekit's "generalized task arithmetic": task arithmetic, TIES, DARE,
// breadcrumbs, DELLA): each input's delta from the base is optionally sparsified (and then, with
// `rescale`, scaled back to its L1 norm), optionally filtered by a per-element sign election,
// then the weighted deltas are summed (normalized, times `lambda`) onto the base. The methods
// differ only in these named options: a method of the family is one TaskVectorOptions row.
#include "merge/methods/methods.h"

namespace anvil::merge {

enum class Sparsify {
  None,
  Magnitude,          // keep the int(density * n) largest |delta|
  Random,             // keep each entry with probability density (DARE)
  MagnitudeOutliers,  // drop the int(gamma * n) largest, then the smallest, down to density (breadcrumbs)
  DellaMagprune,      // keep with probability rising with |delta|'s rank in its row (DELLA)
};

struct TaskVectorOptions {
  std::string_view name;
  Sparsify sparsify = Sparsify::None;
  bool sign_consensus = false;  // TIES's election: the sign of the summed weighted deltas
  bool default_normalize = false;
  bool default_rescale = false;
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
  // Magnitude trimming and sign election on blocks, without rescale (the random drops stay on
  // tensors: their masks come from LibTorch's generator).
  std::unique_ptr<BlockKernel> block_kernel(const MergeTask& task) const override;
  // Elementwise given per-tensor statistics, so every member streams: magnitude selections take
  // two passes that find each task vector's exact thresholds (a radix select over |delta|'s
  // float bits), and rescale one more for the L1 norms before and after sparsification.
  bool chunkable() const override { return true; }
  int statistics_passes(const MergeTask& task) const override;
  size_t statistics_size(size_t n_inputs) const override;
  void accumulate(const MergeTask& chunk, int pass, std::vector<double>& stats) const override;
  at::Tensor merge(const MergeTask& task) const override;

 private:
  at::Tensor sparsified(const MergeTask& task, size_t input, const at::Tensor& delta, std::vector<double>& stats,
                        int sweep) const;
  TaskVectorOptions o_;
};

// Keeps the int(density * numel) entries of largest magnitude (whole tensor in memory).
at::Tensor sparsify_magnitude(const at::Tensor& delta, double density);

// The top-k selection streamed over chunks: histograms of |delta|'s float bits (high 16 bits,
// then low 16 bits inside the boundary bucket) give the exact threshold; entries equal to it are
// kept in index order until exactly k are kept. Pass 0 counts (k unused), pass 1 needs k, which
// the caller computes from total(); keep() may sweep the chunks several times (one per `sweep`).
class MagnitudeSelector {
 public:
  static constexpr size_t kSlots = 2 * 65536 + 8;
  explicit MagnitudeSelector(double* slots) : s_(slots) {}
  void count(const float* delta, int64_t n, int pass, int64_t k);
  double total() const;
  void keep(float* delta, int64_t n, int64_t k, int sweep = 0);  // zeroes what is not kept

 private:
  double* s_;
};

// x with entry i kept with probability probabilities[i] (same shape), else 0: seeded draws from a
// counter-based generator (the same seed and index give the same draw on every platform).
at::Tensor keep_with_probabilities(const at::Tensor& x, const at::Tensor& probabilities, uint64_t seed);
// Keeps each entry with probability `density` (a seeded Bernoulli mask, as above).
at::Tensor sparsify_random(const at::Tensor& delta, double density, uint64_t seed);
// DELLA's MagPrune: within each row (dim 1; a vector is one row), the entry of rank r (0 for the
// smallest |delta|, ties in index order) among c is kept with probability
// density - epsilon + 2 epsilon r / (c - 1) (density for a single column).
at::Tensor sparsify_della(const at::Tensor& delta, double density, double epsilon, uint64_t seed);
// TIES sign election over stacked weighted deltas [n, ...]: +1 where their sum is >= 0, else -1;
// the mask keeps entries whose sign matches (zeros never match).
at::Tensor sign_consensus_mask(const at::Tensor& weighted_deltas);

// Reductions over the short model axis of a contiguous fp32 [n, ...]: LibTorch walks such a
// reduction output element by output element (a profile of sce/della put most of the merge
// there); these run n vectorized passes over the elements instead.
// The sum in model order (x0 + x1 + ..., in fp32, the order LibTorch and the block kernels use).
at::Tensor sum_over_models(const at::Tensor& stacked);
// The population variance (at::var(x, 0, unbiased=false)), by Welford's update in double in
// model order as LibTorch's CPU reduction computes it, rounded once to fp32.
at::Tensor variance_over_models(const at::Tensor& stacked);

}  // namespace anvil::merge
