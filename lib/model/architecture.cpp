#include "model/architecture.h"

#include <algorithm>
#include <string>

namespace anvil::model {

#define ANVIL_FAMILY(name) const Architecture& name##_family();
#include "model/families/families.def"
#undef ANVIL_FAMILY

std::vector<const Architecture*> all_architectures() {
  static const std::vector<const Architecture*> all{
#define ANVIL_FAMILY(name) &name##_family(),
#include "model/families/families.def"
#undef ANVIL_FAMILY
  };
  return all;
}

RoleNames llama_hf_names() {
  using R = TensorRole;
  RoleNames n{};
  set_name(n, R::TokenEmbedding, "model.embed_tokens.weight");
  set_name(n, R::OutputNorm, "model.norm.weight");
  set_name(n, R::Output, "lm_head.weight");
  set_name(n, R::AttnNorm, "model.layers.{L}.input_layernorm.weight");
  set_name(n, R::AttnQ, "model.layers.{L}.self_attn.q_proj.weight");
  set_name(n, R::AttnQBias, "model.layers.{L}.self_attn.q_proj.bias");
  set_name(n, R::AttnK, "model.layers.{L}.self_attn.k_proj.weight");
  set_name(n, R::AttnKBias, "model.layers.{L}.self_attn.k_proj.bias");
  set_name(n, R::AttnV, "model.layers.{L}.self_attn.v_proj.weight");
  set_name(n, R::AttnVBias, "model.layers.{L}.self_attn.v_proj.bias");
  set_name(n, R::AttnOut, "model.layers.{L}.self_attn.o_proj.weight");
  set_name(n, R::AttnOutBias, "model.layers.{L}.self_attn.o_proj.bias");
  set_name(n, R::FfnNorm, "model.layers.{L}.post_attention_layernorm.weight");
  set_name(n, R::FfnGate, "model.layers.{L}.mlp.gate_proj.weight");
  set_name(n, R::FfnUp, "model.layers.{L}.mlp.up_proj.weight");
  set_name(n, R::FfnDown, "model.layers.{L}.mlp.down_proj.weight");
  return n;
}

namespace {
// The part of the attention norm's template up to and including "{L}.": every family has one.
std::string_view layer_prefix_template(const Architecture& arch) {
  const std::string_view t = arch.hf_template(TensorRole::AttnNorm);
  return t.substr(0, t.find("{L}.") + 4);
}
}  // namespace

std::string layer_prefix(const Architecture& arch, int64_t layer) { return expand_name(layer_prefix_template(arch), layer); }

std::optional<LayerName> split_layer_name(const Architecture& arch, const std::string& hf_name) {
  const std::string_view t = layer_prefix_template(arch);
  const std::string_view head = t.substr(0, t.size() - 4);  // "model.layers."
  if (!hf_name.starts_with(head)) return std::nullopt;
  size_t end = head.size();
  while (end < hf_name.size() && hf_name[end] >= '0' && hf_name[end] <= '9') ++end;
  if (end == head.size() || end >= hf_name.size() || hf_name[end] != '.') return std::nullopt;
  if (end - head.size() > 1 && hf_name[head.size()] == '0') return std::nullopt;  // "01"
  int64_t layer = INT64_MAX;
  if (end - head.size() <= 18) layer = std::stoll(hf_name.substr(head.size(), end - head.size()));
  return LayerName{layer, hf_name.substr(end + 1)};
}

RoleNames llama_hf_names_with_mlp_experts() {
  using R = TensorRole;
  RoleNames n = llama_hf_names();
  set_name(n, R::MoeRouter, "model.layers.{L}.mlp.gate.weight");
  set_name(n, R::ExpertGate, "model.layers.{L}.mlp.experts.{E}.gate_proj.weight");
  set_name(n, R::ExpertUp, "model.layers.{L}.mlp.experts.{E}.up_proj.weight");
  set_name(n, R::ExpertDown, "model.layers.{L}.mlp.experts.{E}.down_proj.weight");
  return n;
}

const Architecture* find_architecture(std::string_view model_type) {
  for (const Architecture* a : all_architectures())
    if (a->model_type == model_type) return a;
  return nullptr;
}

const Architecture* find_gguf_architecture(std::string_view gguf_arch, bool has_experts) {
  const Architecture* any = nullptr;
  for (const Architecture* a : all_architectures()) {
    if (a->gguf_arch != gguf_arch) continue;
    if (a->is_moe() == has_experts) return a;
    if (!any) any = a;
  }
  // A family llama.cpp writes only one way (qwen2moe, deepseek) is that family either way; the
  // tensor check then says what is missing.
  return any;
}

std::string supported_model_types_text() {
  std::string list;
  for (const Architecture* a : all_architectures()) list += (list.empty() ? "" : ", ") + std::string(a->model_type);
  return list;
}

std::string supported_gguf_architectures_text() {
  std::vector<std::string_view> seen;
  std::string list;
  for (const Architecture* a : all_architectures()) {
    if (std::find(seen.begin(), seen.end(), a->gguf_arch) != seen.end()) continue;
    seen.push_back(a->gguf_arch);
    list += (list.empty() ? "" : ", ") + std::string(a->gguf_arch);
  }
  return list + " (llama with experts: Mixtral)";
}

}  // namespace anvil::model
