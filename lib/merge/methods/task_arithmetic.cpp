// task_arithmetic: base + lambda x sum of weight x (model - base). No sparsification, no sign election.
#include "merge/methods/task_vectors.h"

namespace anvil::merge {

std::unique_ptr<MergeMethod> make_task_arithmetic() {
  return std::make_unique<TaskVectorMerge>(TaskVectorOptions{.name = "task_arithmetic"});
}

}  // namespace anvil::merge
