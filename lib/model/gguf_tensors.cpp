#include "model/gguf_tensors.h"

#include <fstream>

#include "model/rotary_layout.h"
#include "quant/quant_types.h"
#include "util/error.h"

namespace anvil::model {

bool is_gguf_file(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::string_view(magic, 4) == "GGUF";
}

std::vector<float> gguf_tensor_to_hf_floats(const io::GgufTensorInfo& t, const ModelConfig& config,
                                            const std::string& hf_name, const std::string& where) {
  const quant::QuantType* type = quant::find_quant_type(t.type);
  if (!type) fail(where, "tensor '" + t.name + "': ggml type " + std::to_string(t.type) + " cannot be dequantized");
  std::vector<float> w(t.numel());
  type->decode(t.data.data(), w.data(), static_cast<int64_t>(w.size()));
  if (config.arch->gguf_permute_qk && t.dims.size() == 2) {
    const auto cols = static_cast<int64_t>(t.dims[0]);
    if (hf_name.ends_with("self_attn.q_proj.weight")) w = permute_rotary_rows(w, config.num_heads, cols, false);
    if (hf_name.ends_with("self_attn.k_proj.weight")) w = permute_rotary_rows(w, config.num_kv_heads, cols, false);
  }
  return w;
}

}  // namespace anvil::model
