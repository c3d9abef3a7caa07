// The merge methods anvil knows, by mergekit's names.
#include "merge/methods/methods.h"
#include "util/error.h"

namespace anvil::merge {
namespace {

struct Entry {
  std::string_view name;
  std::unique_ptr<MergeMethod> (*make)();
};

constexpr Entry kMethods[] = {
#define ANVIL_MERGE_METHOD(name) {#name, make_##name},
#include "merge/methods/methods.def"
#undef ANVIL_MERGE_METHOD
};

}  // namespace

const MergeInput* MergeTask::base() const {
  for (const auto& in : inputs)
    if (in.is_base) return &in;
  return nullptr;
}

void throw_merge_error(const MergeTask& task, const std::string& what) { fail("tensor '" + task.tensor_name + "'", what); }

const MergeMethod* find_merge_method(std::string_view name) {
  static const auto instances = [] {
    std::vector<std::unique_ptr<MergeMethod>> v;
    for (const auto& e : kMethods) v.push_back(e.make());
    return v;
  }();
  for (const auto& m : instances)
    if (m->name() == name) return m.get();
  return nullptr;
}

std::vector<std::string_view> merge_method_names() {
  std::vector<std::string_view> out;
  for (const auto& e : kMethods) out.push_back(e.name);
  return out;
}

}  // namespace anvil::merge
