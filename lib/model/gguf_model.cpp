#include "model/gguf_model.h"

namespace anvil::model {

std::unique_ptr<Transformer> load_gguf_transformer(const io::GgufFile& gguf, const LoadOptions& options) {
  ModelConfig config = ModelConfig::from_gguf(gguf);
  check_gguf_shapes(gguf, config);
  auto has = [&](const std::string& hf) { return gguf_has_hf_tensor(gguf, config, hf); };
  auto get = [&](const std::string& hf) {
    HfTensor t = read_gguf_hf_tensor(gguf, config, hf);
    return at::from_blob(t.values.data(), t.shape, at::TensorOptions().dtype(at::kFloat))
        .to(options.device, options.compute_dtype, false, true);
  };
  return std::make_unique<Transformer>(config, get, has, options);
}

}  // namespace anvil::model
