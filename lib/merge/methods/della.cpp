// della / della_linear (DELLA, arXiv 2406.11617): task vectors thinned by MagPrune, a seeded
// random drop whose keep probability rises linearly with |delta|'s rank in its row from
// density - epsilon to density + epsilon, then scaled back to their L1 norm; della adds TIES's
// sign election and normalizes by the agreeing weights.
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_della() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{.name = "della",
                                                             .sparsify = Sparsify::DellaMagprune,
                                                             .sign_consensus = true,
                                                             .default_normalize = true,
                                                             .default_rescale = true});
}

std::unique_ptr<MergeMethod> make_della_linear() {
  return std::make_unique<TaskVectorMerge>(
      TaskVectorOptions{.name = "della_linear", .sparsify = Sparsify::DellaMagprune, .default_rescale = true});
}

}  // namespace anvil::merge
