#include "model/architecture.h"

#include <array>

namespace anvil::model {
namespace {

constexpr std::array<ArchitectureTraits, 4> kArchitectures{{
    {"llama", "LlamaForCausalLM", false, false, FfnKind::Dense, "", "", "", "", "llama", true},
    {"mistral", "MistralForCausalLM", false, false, FfnKind::Dense, "", "", "", "", "llama", true},
    {"qwen2", "Qwen2ForCausalLM", true, false, FfnKind::Dense, "", "", "", "", "qwen2", false},
    {"mixtral", "MixtralForCausalLM", false, false, FfnKind::SparseMoE, "block_sparse_moe.gate.weight",
     "block_sparse_moe.experts.{e}.w1.weight", "block_sparse_moe.experts.{e}.w3.weight",
     "block_sparse_moe.experts.{e}.w2.weight", "llama", true},
}};

}  // namespace

const ArchitectureTraits* find_architecture(std::string_view model_type) {
  for (const auto& a : kArchitectures)
    if (a.model_type == model_type) return &a;
  return nullptr;
}

const ArchitectureTraits* find_gguf_architecture(std::string_view gguf_arch, FfnKind ffn) {
  for (const auto& a : kArchitectures)
    if (a.gguf_arch == gguf_arch && a.ffn == ffn) return &a;
  return nullptr;
}

std::vector<std::string_view> supported_model_types() {
  std::vector<std::string_view> out;
  for (const auto& a : kArchitectures) out.push_back(a.model_type);
  return out;
}

}  // namespace anvil::model
