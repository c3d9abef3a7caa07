// dare_linear / dare_ties: task vectors thinned by a seeded random drop and rescaled by
// 1/density; dare_ties adds TIES's sign election.
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_dare_linear() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{"dare_linear", Sparsify::Random, false, false, true});
}

std::unique_ptr<MergeMethod> make_dare_ties() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{"dare_ties", Sparsify::Random, true, false, true});
}

}  // namespace anvil::merge
