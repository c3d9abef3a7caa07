#include "model/gguf_model.h"

#include <fstream>

#include "model/gguf_names.h"
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

std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options) {
  ModelConfig config = ModelConfig::from_gguf(gguf);
  const std::string where = gguf.path().string();
  auto tensor = [&](const std::string& hf) -> const io::GgufTensorInfo* {
    auto name = hf_to_gguf_name(hf);
    return name ? gguf.find_tensor(*name) : nullptr;
  };
  auto has = [&](const std::string& hf) { return tensor(hf) != nullptr; };
  auto get = [&](const std::string& hf) {
    const io::GgufTensorInfo& t = *tensor(hf);
    std::vector<float> w = gguf_tensor_to_hf_floats(t, config, hf, where);
    std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
    return at::from_blob(w.data(), shape, at::TensorOptions().dtype(at::kFloat)).to(options.device, options.compute_dtype, false, true);
  };
  return std::make_unique<Transformer>(config, get, has, options);
}

}  // namespace anvil::model
