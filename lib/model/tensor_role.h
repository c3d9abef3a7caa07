#pragma once
// What a tensor does in the model, independent of how a file spells it (llama.cpp's llm_tensor).
// GGUF names are one table for every family (as in llama.cpp's llama-arch); Hugging Face names
// are a template per role in each family's row (architecture.h). Readers, writers, merge and LoRA
// targeting go through roles, never through literal "model.layers." strings.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace anvil::model {

enum class TensorRole : uint8_t {
  TokenEmbedding,
  OutputNorm,
  OutputNormBias,
  Output,
  OutputBias,
  AttnNorm,
  AttnNormBias,
  AttnQ,
  AttnQBias,
  AttnK,
  AttnKBias,
  AttnV,
  AttnVBias,
  AttnQkv,       // fused q/k/v in the checkpoint (Phi-3)
  AttnOut,
  AttnOutBias,
  AttnQNorm,     // per-head norms before the rotary embedding (Qwen3, Gemma 3)
  AttnKNorm,
  AttnPostNorm,  // on the attention output, before the residual (Gemma 2/3)
  FfnNorm,
  FfnPostNorm,   // on the FFN output, before the residual (Gemma 2/3)
  FfnGate,
  FfnUp,
  FfnUpBias,
  FfnGateUp,     // fused gate/up in the checkpoint (Phi-3), gate rows first
  FfnDown,
  FfnDownBias,
  MoeRouter,
  ExpertGate,    // per expert in Hugging Face files, stacked per layer in GGUF
  ExpertUp,
  ExpertDown,
  SharedGate,    // shared experts (Qwen2-MoE, DeepSeekMoE): one dense MLP beside the routed ones
  SharedUp,
  SharedDown,
  SharedExpertGate,  // Qwen2-MoE's sigmoid gate on the shared expert
  Count
};
inline constexpr size_t kTensorRoleCount = static_cast<size_t>(TensorRole::Count);

// Name templates: {L} is the layer index, {E} the expert index; "" means the family has no such
// tensor.
using RoleNames = std::array<std::string_view, kTensorRoleCount>;

inline void set_name(RoleNames& names, TensorRole role, std::string_view name_template) {
  names[static_cast<size_t>(role)] = name_template;
}

// llama.cpp's GGUF name of a role (experts: the stacked tensor).
std::string_view gguf_name_template(TensorRole role);
bool is_per_layer(TensorRole role);
bool is_expert(TensorRole role);   // ExpertGate/Up/Down: one tensor per expert in HF
bool is_norm(TensorRole role);     // a norm's scale (not its bias)
bool is_bias(TensorRole role);
// A projection inside a layer (attention, MLP, experts); not the routers, norms or biases. What
// LoRA targets and the integer formats quantize.
bool is_layer_projection(TensorRole role);
std::string_view role_label(TensorRole role);  // "attn_q", for messages

// A name parsed against a template set: its role, layer and expert (-1 where not applicable).
// Indices too large for int64 come back as INT64_MAX, recognisably out of range.
struct TensorName {
  TensorRole role;
  int64_t layer = -1;
  int64_t expert = -1;
};

std::string expand_name(std::string_view name_template, int64_t layer, int64_t expert = -1);
// Matches `name` against every non-empty template in `names`.
std::optional<TensorName> match_name(const RoleNames& names, std::string_view name);
// The GGUF table as a RoleNames, restricted to the roles `present` has (a family's own roles).
RoleNames gguf_names_for(const RoleNames& present);

}  // namespace anvil::model
