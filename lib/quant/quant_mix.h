#pragma once
// llama.cpp's file types ("mixes"): a default tensor type plus llama-quantize's per-tensor rules
// (output.weight in Q6_K, more bits for attn_v / ffn_down in chosen layers, fallbacks when a row
// is not a multiple of the block, and the 8-expert bumps). anvil's choices equal llama-quantize's,
// so file sizes and tensor bytes match.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quant/quant_types.h"

namespace anvil::quant {

struct QuantMix {
  std::string_view name;     // "Q4_K_M"
  uint32_t file_type;        // general.file_type (llama_ftype)
  std::string_view base;     // default tensor type
  // A float file type (F32, F16, BF16) is a conversion, not a quantization.
  bool quantized() const { return base != "F32" && base != "F16" && base != "BF16"; }
};

const QuantMix* find_quant_mix(std::string_view name);  // case-insensitive
std::vector<std::string_view> quant_mix_names();

// What a model looks like to the rules.
struct MixContext {
  int64_t n_layers = 0;
  int64_t n_head = 1, n_head_kv = 1;
  bool tied_embeddings = false;
  int64_t n_expert = 0;  // MoE: experts per layer
  bool has_imatrix = false;  // llama-quantize changes a few choices when given an importance matrix
};

// ggml_n_dims: the dimension count without trailing dimensions of one (a [64, 1] tensor, Qwen2-MoE's
// shared-expert gate, is 1-D to llama-quantize and stays unquantized).
size_t ggml_dimension_count(const std::vector<uint64_t>& dims);

// The type for one tensor (GGUF name, row length = dims[0], dimension count as ggml counts). Tensors the rules
// do not quantize (norms, 1-D) keep `source_type`.
const QuantType* choose_tensor_type(const QuantMix& mix, const MixContext& ctx, const std::string& gguf_name,
                                    int64_t row_length, size_t n_dims, const QuantType* source_type);

}  // namespace anvil::quant
