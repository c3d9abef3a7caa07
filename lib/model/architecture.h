#pragma once
// One row per supported model family: everything that differs between families in how a
// checkpoint is read and run. Adding a family means adding a row here (and, if it brings a new
// kind of block, the block itself in transformer.cpp).
#include <string_view>
#include <vector>

namespace anvil::model {

enum class FfnKind { Dense, SparseMoE };

struct ArchitectureTraits {
  std::string_view model_type;        // config.json "model_type"
  std::string_view hf_class;          // config.json "architectures"[0]
  bool default_attention_bias;        // q/k/v projections carry a bias unless config says otherwise
  bool default_tie_word_embeddings;
  FfnKind ffn;
  // Tensor names relative to "model.layers.N.": MoE experts use {e} for the expert index.
  std::string_view moe_router;        // e.g. "block_sparse_moe.gate.weight"
  std::string_view moe_gate, moe_up, moe_down;
  // GGUF: llama.cpp's architecture name ("" if anvil cannot write this family to GGUF) and
  // whether its converter permutes q/k rows into the interleaved rotary layout.
  std::string_view gguf_arch;
  bool gguf_permute_qk;
};

const ArchitectureTraits* find_architecture(std::string_view model_type);
// The first family llama.cpp writes as `gguf_arch` with this kind of FFN (a GGUF "llama" with
// llama.expert_count is Mixtral).
const ArchitectureTraits* find_gguf_architecture(std::string_view gguf_arch, FfnKind ffn);
std::vector<std::string_view> supported_model_types();

}  // namespace anvil::model
