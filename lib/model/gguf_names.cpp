#include "model/gguf_names.h"

namespace anvil::model {

std::optional<TensorName> parse_hf_name(const Architecture& arch, const std::string& hf_name) {
  return match_name(*arch.hf_names, hf_name);
}

std::optional<TensorName> parse_gguf_name(const Architecture& arch, const std::string& gguf_name) {
  static thread_local const Architecture* cached_arch = nullptr;
  static thread_local RoleNames cached;
  if (cached_arch != &arch) cached = gguf_names_for(*arch.hf_names), cached_arch = &arch;
  return match_name(cached, gguf_name);
}

std::string hf_name_of(const Architecture& arch, const TensorName& n) {
  return expand_name(arch.hf_template(n.role), n.layer, n.expert);
}

std::string gguf_name_of(const TensorName& n) { return expand_name(gguf_name_template(n.role), n.layer); }

}  // namespace anvil::model
