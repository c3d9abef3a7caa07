#include "model/gguf_model.h"

#include <fstream>

#include "model/gguf_names.h"
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

at::Tensor dequantize_gguf_tensor(const io::GgufTensorInfo& t, const std::string& where) {
  const quant::QuantType* type = quant::find_quant_type(t.type);
  if (!type) fail(where, "tensor '" + t.name + "': ggml type " + std::to_string(t.type) + " cannot be dequantized");
  std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
  auto out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  type->decode(t.data.data(), out.data_ptr<float>(), static_cast<int64_t>(t.numel()));
  return out;
}

at::Tensor permute_rotary_rows(const at::Tensor& w, int64_t n_heads, bool to_gguf) {
  const int64_t rows = w.size(0), half = rows / n_heads / 2;
  std::vector<int64_t> rest(w.sizes().begin() + 1, w.sizes().end());
  std::vector<int64_t> shape{n_heads, to_gguf ? 2 : half, to_gguf ? half : 2};
  shape.insert(shape.end(), rest.begin(), rest.end());
  return w.reshape(shape).transpose(1, 2).reshape(w.sizes()).contiguous();
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
    at::Tensor w = dequantize_gguf_tensor(*tensor(hf), where);
    if (config.arch->gguf_permute_qk) {
      if (hf.ends_with("self_attn.q_proj.weight")) w = permute_rotary_rows(w, config.num_heads, false);
      if (hf.ends_with("self_attn.k_proj.weight")) w = permute_rotary_rows(w, config.num_kv_heads, false);
    }
    return w.to(options.device, options.compute_dtype);
  };
  return std::make_unique<Transformer>(config, get, has, options);
}

}  // namespace anvil::model
