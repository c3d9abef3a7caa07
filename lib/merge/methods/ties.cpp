// ties: task vectors trimmed to their top `density` by magnitude, a per-element sign elected by
// the summed weighted deltas, and the disjoint (weight-normalized) mean of the agreeing entries.
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_ties() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{
      .name = "ties", .sparsify = Sparsify::Magnitude, .sign_consensus = true, .default_normalize = true});
}

}  // namespace anvil::merge
