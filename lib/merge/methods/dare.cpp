// dare_linear / dare_ties: task vectors thinned by a seeded random drop and (rescale, the
// default) scaled back to their L1 norm, as current mergekit does; dare_ties adds TIES's sign
// election.
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_dare_linear() {
  return std::make_unique<TaskVectorMerge>(
      TaskVectorOptions{.name = "dare_linear", .sparsify = Sparsify::Random, .default_rescale = true});
}

std::unique_ptr<MergeMethod> make_dare_ties() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{
      .name = "dare_ties", .sparsify = Sparsify::Random, .sign_consensus = true, .default_rescale = true});
}

}  // namespace anvil::merge
