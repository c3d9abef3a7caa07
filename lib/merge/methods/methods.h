#pragma once
// Factories of the built-in merge methods, for the registry, and helpers they share.
#include <memory>
#include <string>

#include "merge/merge_method.h"

namespace anvil::merge {

[[noreturn]] void throw_merge_error(const MergeTask& task, const std::string& what);

std::unique_ptr<MergeMethod> make_linear();
std::unique_ptr<MergeMethod> make_slerp();
std::unique_ptr<MergeMethod> make_task_arithmetic();
std::unique_ptr<MergeMethod> make_ties();
std::unique_ptr<MergeMethod> make_dare_linear();
std::unique_ptr<MergeMethod> make_dare_ties();
std::unique_ptr<MergeMethod> make_passthrough();

// Spherical interpolation of two tensors seen as flat vectors (exposed for tests).
at::Tensor slerp(double t, const at::Tensor& v0, const at::Tensor& v1);

}  // namespace anvil::merge
