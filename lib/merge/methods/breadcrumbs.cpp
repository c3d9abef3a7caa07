// breadcrumbs / breadcrumbs_ties (Model Breadcrumbs, arXiv 2312.06795): each task vector loses
// its `gamma` fraction of largest entries (outliers) and then its smallest, down to `density`;
// breadcrumbs_ties adds TIES's sign election. No normalization or rescale by default.
// Where int(gamma * n) is 0, no outlier is dropped (mergekit's slice [n_bot:-0] would drop
// every entry there).
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_breadcrumbs() {
  return std::make_unique<TaskVectorMerge>(
      TaskVectorOptions{.name = "breadcrumbs", .sparsify = Sparsify::MagnitudeOutliers});
}

std::unique_ptr<MergeMethod> make_breadcrumbs_ties() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{
      .name = "breadcrumbs_ties", .sparsify = Sparsify::MagnitudeOutliers, .sign_consensus = true});
}

}  // namespace anvil::merge
