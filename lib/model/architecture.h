#pragma once
// One row per model family: everything that differs between families in how a checkpoint is
// read, run and written. A family is one file in model/families/ holding its row (named fields,
// defaults for the common case) plus, only where the family computes something new or spells its
// config differently, a small hook; families.def lists the files. The transformer, the GGUF
// reader and writer, merge, LoRA targeting and the integer exporters read the row.
#include <nlohmann/json_fwd.hpp>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tensor_role.h"

namespace anvil::util {
class JsonFields;
}

namespace anvil::model {

struct ModelConfig;
enum class HParam : uint8_t;  // gguf_hparams.h

enum class NormKind : uint8_t {
  Rms,           // w * x / rms(x)
  RmsPlusOne,    // (1 + w) * x / rms(x): Gemma stores the offset from one
  LayerNorm,     // (x - mean) / std * w + b
};
enum class Activation : uint8_t { Silu, GeluTanh, Gelu };
enum class FfnKind : uint8_t { Dense, SparseMoE };
enum class SharedExperts : uint8_t {
  None,
  Plain,          // DeepSeekMoE: added to the routed experts' output
  SigmoidGated,   // Qwen2-MoE: times sigmoid(shared_expert_gate(x))
};

struct Architecture {
  std::string_view model_type;        // config.json "model_type"
  std::string_view hf_class;          // config.json "architectures"[0] written for this family
  std::string_view gguf_arch;         // llama.cpp's general.architecture

  // The block.
  NormKind norm = NormKind::Rms;
  Activation activation = Activation::Silu;  // the default when config.json names none
  bool gated_ffn = true;                     // act(gate(x)) * up(x); else act(up(x))
  bool qk_norm = false;                      // per-head norms of q and k before the rotary embedding
  bool sandwich_norms = false;               // norms on the attention and FFN outputs too
  bool parallel_attention_ffn = false;       // h + attn(n(h)) + ffn(n(h)) off one norm (Phi-2)
  bool attention_bias = false;               // q/k/v biases unless config.json says otherwise
  bool embeddings_times_sqrt_hidden = false; // Gemma
  bool tie_word_embeddings = false;          // default when config.json does not say
  bool sliding_window_default_on = true;     // honour "sliding_window" unless use_sliding_window: false

  // The FFN: dense everywhere, or sparse (routed experts) in the layers the config says.
  FfnKind ffn = FfnKind::Dense;
  SharedExperts shared_experts = SharedExperts::None;
  bool renormalize_top_k = true;             // default of norm_topk_prob (Mixtral: always)

  // Hugging Face tensor names by role; "" = the family has no such tensor.
  const RoleNames* hf_names = nullptr;

  // GGUF: how llama.cpp's converter stores values (the transforms are in tensor_transforms.h) and
  // which {arch}.* keys it writes beyond the six every family has.
  bool gguf_permute_qk = false;              // q/k rows in the interleaved rotary layout
  bool gguf_norm_plus_one = false;           // norms stored as 1 + w (Gemma)
  std::span<const HParam> gguf_keys;

  // Family-specific config.json keys, read after the common ones (may be null).
  void (*read_config)(const util::JsonFields& fields, ModelConfig& config) = nullptr;
  // What llama.cpp fixes for the family rather than storing it (Gemma 2's alternating windows),
  // applied after the GGUF keys are read (may be null).
  void (*complete_gguf_config)(ModelConfig& config) = nullptr;
  // Family-specific config.json keys written for a config (GGUF -> Hugging Face), after the
  // common ones (may be null).
  void (*write_config)(const ModelConfig& config, nlohmann::ordered_json& json) = nullptr;

  // Helpers over the row.
  bool has(TensorRole role) const { return !(*hf_names)[static_cast<size_t>(role)].empty(); }
  std::string_view hf_template(TensorRole role) const { return (*hf_names)[static_cast<size_t>(role)]; }
  bool is_moe() const { return ffn == FfnKind::SparseMoE; }
};

// By config.json model_type; nullptr if unknown.
const Architecture* find_architecture(std::string_view model_type);
// By llama.cpp's architecture name; a GGUF "llama" with experts is Mixtral.
const Architecture* find_gguf_architecture(std::string_view gguf_arch, bool has_experts);
std::vector<const Architecture*> all_architectures();
std::string supported_model_types_text();  // "llama, mistral, ..." for messages
std::string supported_gguf_architectures_text();

// A per-layer Hugging Face name split into its layer and the rest ("model.layers.3.mlp.up_proj.weight"
// -> 3, "mlp.up_proj.weight"), by the family's layer prefix; nullopt for names outside the layers.
struct LayerName {
  int64_t layer;
  std::string suffix;
};
std::optional<LayerName> split_layer_name(const Architecture& arch, const std::string& hf_name);
std::string layer_prefix(const Architecture& arch, int64_t layer);  // "model.layers.3."

// The names llama.cpp-style families share: Llama's layout, from which the others differ by a
// few entries (families/llama_names.cpp).
RoleNames llama_hf_names();
// Llama's names with the FFN as transformers' MoE blocks spell it (Qwen2-MoE, DeepSeekMoE): the
// router "mlp.gate" and routed experts "mlp.experts.E.{gate,up,down}_proj"; the dense "mlp.*_proj"
// stay for the dense layers.
RoleNames llama_hf_names_with_mlp_experts();

}  // namespace anvil::model
