#pragma once
// Factories of the built-in merge methods, for the registry, and helpers they share.
#include <memory>
#include <string>

#include "merge/merge_method.h"

namespace anvil::merge {

[[noreturn]] void throw_merge_error(const MergeTask& task, const std::string& what);

#define ANVIL_MERGE_METHOD(name) std::unique_ptr<MergeMethod> make_##name();
#include "merge/methods/methods.def"
#undef ANVIL_MERGE_METHOD

// Spherical interpolation of two tensors seen as flat vectors (exposed for tests).
at::Tensor slerp(double t, const at::Tensor& v0, const at::Tensor& v1);

}  // namespace anvil::merge
