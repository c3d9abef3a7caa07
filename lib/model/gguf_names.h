#pragma once
// Hugging Face <-> llama.cpp tensor names (llama.cpp's tensor_mapping).
#include <cstdint>
#include <optional>
#include <string>

namespace anvil::model {

// N of a "model.layers.N." name (INT64_MAX when N overflows); nullopt for other names.
std::optional<int64_t> hf_layer_index(const std::string& hf_name);

std::optional<std::string> hf_to_gguf_name(const std::string& hf_name);
std::optional<std::string> gguf_to_hf_name(const std::string& gguf_name);

// Mixtral's experts: Hugging Face keeps one 2-D tensor per expert and projection
// (model.layers.N.block_sparse_moe.experts.E.w1/w3/w2.weight); llama.cpp stacks them into one 3-D
// tensor per layer and projection (blk.N.ffn_gate_exps/ffn_up_exps/ffn_down_exps.weight), expert
// slowest: expert E's rows are the E-th contiguous slice.
struct ExpertSlice {
  std::string gguf_name;
  int64_t expert = 0;
};
std::optional<ExpertSlice> hf_expert_to_gguf(const std::string& hf_name);
// The Hugging Face name of one expert's slice of a stacked tensor; nullopt if not a stacked name.
std::optional<std::string> gguf_expert_to_hf(const std::string& gguf_name, int64_t expert);

}  // namespace anvil::model
