// task_arithmetic: base + sum of weight x (model - base). No sparsification, no sign election.
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_task_arithmetic() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{"task_arithmetic", Sparsify::None, false, false, false});
}

}  // namespace anvil::merge
